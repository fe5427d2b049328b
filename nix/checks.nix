# `nix flake check`: the workspace's test suite, and the QEMU system tests
# against the Nix-built node image.
{
  lib,
  pkgs,
  basalt,
  # nix/node-image.nix applied to nixpkgs; called again with the test key.
  mkNodeImage,
}:
let
  # Tools the peer tests call (scripts/install-deps is the Debian list).
  peerTools = [
    pkgs.openssh
    pkgs.cpio
    pkgs.zstd
    pkgs.gzip
    pkgs.xz
    pkgs.squashfsTools
    pkgs.e2fsprogs
    pkgs.kmod
  ];

  # qemu-tests' admin key (PrivateKey::from_seed(&[0xad; 32], "qemu-tests-admin")
  # in qemu-tests/src/lib.rs). A test key: only the test image trusts it.
  qemuTestsAdmin = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGSgjmWcTnUAyDpg5FPuYI3nTYz0Q36KB3m3sc8gUyyK qemu-tests-admin";
  testImage =
    (mkNodeImage {
      name = "basalt-node-image-qemu-tests";
      admins = [ qemuTestsAdmin ];
    }).image;
in
{
  # Every unit test, and the integration tests that run in a build sandbox:
  # no root, no network, no Nix store of their own, no host packages at
  # Debian paths. Those others run in this repository's CI (scripts/test) and
  # in qemu-boot below: image-builder's nix_* and debian_image, and its
  # profiles test too (its builds take the host's /boot/vmlinuz-*,
  # /lib/modules, /usr/bin/true, /bin/bash and /usr/lib/x86_64-linux-gnu,
  # none of which exist in the sandbox; the profile parser's own unit tests
  # run here through --lib), machined's containerd and network tests, and
  # qemu-tests.
  cargo-test = basalt.overrideAttrs (old: {
    pname = "basalt-cargo-test";
    doCheck = true;
    nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ peerTools;
    # cargoCheckHook: `cargo test --target … --release <cargoTestFlags> -- <checkFlags>`.
    cargoTestFlags = [
      "--workspace"
      "--exclude"
      "qemu-tests"
      "--lib"
      "--bins"
      "--test"
      "bad_inputs"
      "--test"
      "cli"
      "--test"
      "reader"
      "--test"
      "writer"
      "--test"
      "reproducible"
      "--test"
      "gnu_cpio"
      "--test"
      "api"
      "--test"
      "supervisor"
    ];
    preCheck = (old.preCheck or "") + ''
      export HOME=$TMPDIR
    '';
    # The binaries are not the point here; keep the output small.
    postInstall = ''
      rm -rf $out/bin
      mkdir -p $out
      echo "cargo test passed" > $out/result
    '';
  });

  # qemu-tests (the system tests) against the Nix-built image: the harness
  # boots $BASALT_IMAGE_DIR instead of building the Debian profile, and picks
  # KVM when /dev/kvm is usable in the sandbox, TCG otherwise
  # (BASALT_QEMU_ACCEL overrides; builders that list `kvm` in system-features
  # can require it with qemu-boot.overrideAttrs { requiredSystemFeatures = [ "kvm" ]; }).
  qemu-boot = basalt.overrideAttrs (old: {
    pname = "basalt-qemu-boot";
    cargoBuildFlags = [
      "--package"
      "qemu-tests"
    ];
    doCheck = true;
    nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ peerTools ++ [ pkgs.qemu_kvm ];
    cargoTestFlags = [
      "--package"
      "qemu-tests"
    ];
    # One VM at a time; boots are slow under TCG.
    dontUseCargoParallelTests = true;
    preCheck = (old.preCheck or "") + ''
      export HOME=$TMPDIR
      export BASALT_IMAGE_DIR=${testImage}
    '';
    dontCargoInstall = true;
    installPhase = ''
      runHook preInstall
      mkdir -p $out
      echo ${testImage} > $out/image
      runHook postInstall
    '';
    passthru = (old.passthru or { }) // {
      image = testImage;
    };
  });
}

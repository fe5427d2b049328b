# The Nix ↔ image-builder contract, buildable offline with Nix 2.8 and no
# nixpkgs (driven by image-builder/tests/nix_flake_build.rs, in a private
# store). It builds ../image.nix — the derivation the flake's node-image
# uses — with stand-ins for nixpkgs' pieces:
# - image-builder: a statically linked build imported from the host;
# - the kernel: a directory holding a bzImage-shaped file and a depmod tree;
# - the payload: three derivations with references between them;
# - closureInfo: ./closure-info.awk over structured attrs, in nixpkgs'
#   closureInfo output layout (registration, store-paths, total-nar-size);
# - writeText: a /bin/sh derivation (the test's sandbox exposes the host's
#   /bin, /lib, /lib64 and /usr);
# - systemd: the host's systemd-boot-efi files (stub and systemd-boot),
#   imported at nixpkgs' systemd layout, lib/systemd/boot/efi/;
# - xorriso: a store path whose bin/xorriso is the host's /usr/bin/xorriso.
# The disk and iso attributes pass image.nix what ../node-image.nix passes it
# for the flake's node-disk and node-iso: boot binaries, version, artifacts,
# and xorriso's bin directory as the builder's PATH.
{
  # A directory holding bin/image-builder (statically linked).
  imageBuilderSrc,
  # A directory holding bzImage and lib/modules/<kernelRelease>/.
  kernelSrc,
  kernelRelease,
  # A directory holding lib/systemd/boot/efi/{linuxx64.efi.stub,systemd-bootx64.efi}.
  systemdSrc,
  # An OpenSSH ed25519 public key line.
  admin,
  sourceDateEpoch ? 1700000000,
  system ? builtins.currentSystem,
}:
let
  sh =
    name: script: attrs:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-ec"
          script
        ];
        PATH = "/bin:/usr/bin";
      }
      // attrs
    );

  writeText =
    name: text:
    sh name ''cp "$textPath" "$out"'' {
      inherit text;
      passAsFile = [ "text" ];
    };

  imageBuilderPkg = builtins.path {
    path = imageBuilderSrc;
    name = "image-builder-static";
  };
  kernel = builtins.path {
    path = kernelSrc;
    name = "linux-stand-in";
  };
  systemd = builtins.path {
    path = systemdSrc;
    name = "systemd-stand-in";
  };
  xorriso = sh "xorriso-stand-in" ''
    mkdir -p $out/bin
    ln -s /usr/bin/xorriso $out/bin/xorriso
  '' { };
  # As ../node-image.nix names them in nixpkgs' systemd.
  efi = "${systemd}/lib/systemd/boot/efi";
  media = {
    version = "7.3.1";
    stub = "${efi}/linuxx64.efi.stub";
    systemdBoot = "${efi}/systemd-bootx64.efi";
  };

  # app → lib → data, and app → image-builder (its bin/basalt-app is a
  # symlink to the static binary, so the image carries a real executable).
  data = sh "basalt-data" ''
    mkdir $out
    echo data > $out/data.txt
  '' { };
  lib = sh "basalt-lib" ''
    mkdir -p $out/lib
    echo ${data}/data.txt > $out/lib/libdata.txt
  '' { };
  app = sh "basalt-app" ''
    mkdir -p $out/bin $out/etc
    ln -s ${imageBuilderPkg}/bin/image-builder $out/bin/basalt-app
    echo ${lib}/lib/libdata.txt > $out/etc/app.conf
  '' { };

  closureInfo =
    { rootPaths }:
    derivation {
      inherit system;
      name = "closure-info";
      __structuredAttrs = true;
      exportReferencesGraph.closure = rootPaths;
      builder = "/bin/sh";
      args = [
        "-ec"
        ''
          out=${builtins.placeholder "out"}
          awk=
          for a in /usr/bin/mawk /usr/bin/gawk /usr/bin/original-awk /bin/busybox; do
            if [ -x "$a" ]; then awk=$a; break; fi
          done
          [ -n "$awk" ] || { echo "no awk under /usr/bin" >&2; exit 1; }
          [ "$awk" != /bin/busybox ] || awk="$awk awk"
          /bin/mkdir "$out"
          $awk -v out="$out" -f ${./closure-info.awk} .attrs.json
        ''
      ];
    };

  appClosure = closureInfo { rootPaths = [ app ]; };

  profile = {
    name = "nix-contract";
    kernelImage = "${kernel}/bzImage";
    modulesDir = "${kernel}/lib/modules/${kernelRelease}";
    modules = [ "basalt-dummy" ];
    machined = "${imageBuilderPkg}/bin/image-builder";
    binaries = [
      {
        source = "${app}/bin/basalt-app";
        target = "/usr/bin/basalt-app";
      }
    ];
    files = [
      {
        source = "${app}/etc/app.conf";
        target = "/etc/app.conf";
        mode = 420; # 0o644
      }
    ];
    admins = [ admin ];
    nixPaths = [ "${app}" ];
    artifacts = [
      "kernel"
      "initramfs"
      "rootfs"
    ];
  };

  image =
    args:
    import ../image.nix (
      {
        inherit
          system
          writeText
          profile
          sourceDateEpoch
          ;
        imageBuilder = "${imageBuilderPkg}/bin/image-builder";
      }
      // args
    );
in
{
  inherit app lib data;
  closure-info = appClosure;
  image-builder = imageBuilderPkg;
  # The same image three ways; all three must be byte-identical.
  image-graph = image {
    name = "basalt-image-graph";
    closureRoot = app;
  };
  image-registration = image {
    name = "basalt-image-registration";
    closureInfo = appClosure;
  };
  image-store-paths = image {
    name = "basalt-image-store-paths";
    closureInfo = appClosure;
    closureInfoFile = "store-paths";
  };
  # The flake's node-disk and node-iso. The disk's root slots are 16 MiB
  # (the default 1 GiB makes a 2.4 GiB sparse disk.raw that Nix reads whole
  # to hash, twice under --check); the iso keeps the default, as the flake does.
  image-disk = image {
    name = "basalt-image-disk";
    closureInfo = appClosure;
    path = "${xorriso}/bin";
    profile =
      profile
      // media
      // {
        artifacts = [
          "uki"
          "disk"
        ];
        slotSizeMib = 16;
      };
  };
  image-iso = image {
    name = "basalt-image-iso";
    closureInfo = appClosure;
    path = "${xorriso}/bin";
    profile = profile // media // { artifacts = [ "iso" ]; };
  };
  # A closure that misses what the profile installs (app is left out):
  # image-builder must fail the build.
  image-incomplete = image {
    name = "basalt-image-incomplete";
    closureRoot = lib;
    profile = profile // {
      nixPaths = [ "${lib}" ];
    };
  };
}

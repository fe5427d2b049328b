# The workspace's binaries: machined, basaltctl and image-builder.
#
# static = true links them with `-C target-feature=+crt-static` against glibc's
# static libraries. cargoBuildHook always passes `--target`, so RUSTFLAGS
# reach only the target's crates, never build scripts or proc macros. A static
# machined is what the node image runs as /init: nothing to load before the
# root switch.
{
  lib,
  rustPlatform,
  glibc,
  static ? false,
}:
let
  workspace = (lib.importTOML ../Cargo.toml).workspace.package;
in
rustPlatform.buildRustPackage {
  pname = if static then "basalt-static" else "basalt";
  inherit (workspace) version;

  # Only what cargo reads: editing Nix, docs or scripts rebuilds nothing.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../api
      ../basaltctl
      ../configs
      ../image-builder
      ../initramfs
      ../machined
      ../qemu-tests
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [
    "--package"
    "machined"
    "--package"
    "basaltctl"
    "--package"
    "image-builder"
  ];
  # The suite runs in checks.cargo-test, with the tools its peer tests use.
  doCheck = false;

  buildInputs = lib.optionals static [ glibc.static ];
  env = lib.optionalAttrs static { RUSTFLAGS = "-C target-feature=+crt-static"; };

  meta = {
    description = "Basalt, an immutable Kubernetes node OS: machined, basaltctl, image-builder";
    homepage = workspace.repository;
    license = [
      lib.licenses.asl20
      lib.licenses.mit
    ];
    mainProgram = "basaltctl";
    platforms = lib.platforms.linux;
  };
}

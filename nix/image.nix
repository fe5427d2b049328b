# The node image derivation: `image-builder build` is the builder itself, no
# shell and no stdenv around it. Builtins only, so the offline contract test
# (image-builder/tests/nix_flake_build.rs) builds this very derivation with
# Nix 2.8 and stand-in inputs; the flake (nix/node-image.nix) gives it
# nixpkgs' pieces.
#
# The payload's closure reaches image-builder one of two ways:
# - closureInfo: nixpkgs' `closureInfo { rootPaths = …; }`; the profile's
#   closure_file is its `registration` (path, narHash, narSize, references) or
#   `store-paths` (one path a line), as `closureInfoFile` says.
# - closureRoot: one store path; Nix writes its closure with
#   `exportReferencesGraph` into the build directory.
# Either way image-builder hashes every path again, refuses a closure with a
# dangling reference, and records each path's NAR hash in manifest.json.
{
  system,
  # The image-builder executable, e.g. "${basalt}/bin/image-builder".
  imageBuilder,
  # name: text: a store file holding text (nixpkgs' writeText).
  writeText,
  # Arguments of ./profile.nix, except closureFile.
  profile,
  closureInfo ? null,
  closureInfoFile ? "registration",
  closureRoot ? null,
  # Every timestamp in the image is clamped to this.
  sourceDateEpoch ? 1,
  # PATH of the builder: the tools image-builder runs (xorriso for the iso
  # artifact); null: none (a kernel + initramfs build runs no tool).
  path ? null,
  name ? "basalt-node-image",
}:
assert
  (closureInfo == null) != (closureRoot == null)
  || throw "nix/image.nix: give exactly one of closureInfo and closureRoot";
let
  closureFile =
    if closureInfo != null then
      "${closureInfo}/${closureInfoFile}"
    # Expanded by image-builder from the builder's environment.
    else
      "\${NIX_BUILD_TOP}/closure";
  profileFile = writeText "${name}.toml" (import ./profile.nix (profile // { inherit closureFile; }));
  epoch = toString sourceDateEpoch;
in
derivation (
  {
    inherit name system;
    builder = imageBuilder;
    args = [
      "build"
      "--profile"
      profileFile
      "--out"
      (builtins.placeholder "out")
      "--source-date-epoch"
      epoch
    ];
    SOURCE_DATE_EPOCH = epoch;
    RUST_LOG = "image_builder=info";
  }
  // (if closureRoot != null then { exportReferencesGraph = [ "closure" closureRoot ]; } else { })
  // (if path != null then { PATH = path; } else { })
)

# The upstream components of packages/, built by Nix from the same pins
# image-builder builds from: each folder's go.mod and go.sum (the lock) and
# package.toml (the recipe: main packages, tags, cgo, version stamps), read
# here with builtins.fromTOML so the two build paths cannot drift apart.
#
# buildGoModule fetches the modules into a fixed-output derivation (with
# proxyVendor: Go's module download cache, whole module zips, so trees such as
# Cilium's bpf/ that are no Go package are there too); its hash for each
# component is in ./vendor-hashes.nix, computed by scripts/nix-vendor-hashes
# (`go mod download` into an empty cache, then `nix hash path`).
#
# Needs a nixpkgs whose Go is >= 1.26 (the go line of every wrapper go.mod).
{
  lib,
  pkgs,
  buildGoModule ? pkgs.buildGo126Module or pkgs.buildGoModule,
  vendorHashes ? import ./vendor-hashes.nix,
}:
let
  build =
    name:
    let
      dir = ../packages + "/${name}";
      recipe = builtins.fromTOML (builtins.readFile (dir + "/package.toml"));
      version = recipe.version;
      bare = lib.removePrefix "v" version;
      parts = lib.splitString "." (builtins.head (lib.splitString "-" bare));
      expand = builtins.replaceStrings
        [ "{version}" "{version_bare}" "{major}" "{minor}" "{patch}" ]
        [ version bare (builtins.elemAt parts 0) (builtins.elemAt parts 1) (builtins.elemAt parts 2) ];
      cgo = recipe.cgo;
      static = recipe.static or (!cgo);
      ldflags =
        [ "-s" "-w" "-buildid=" ]
        ++ lib.mapAttrsToList (var: value: "-X=${var}=${expand value}") (recipe.ldflags or { })
        ++ lib.optionals (cgo && static) [ "-linkmode=external" "-extldflags=-static" ];
      goBuild =
        bin:
        let
          tags = (recipe.tags or [ ]) ++ (bin.tags or [ ]);
        in
        "go build -trimpath -buildvcs=false -mod=readonly"
        + lib.optionalString (tags != [ ]) " -tags=${lib.concatStringsSep "," tags}"
        + " -ldflags=${lib.escapeShellArg (lib.concatStringsSep " " ldflags)}"
        + " -o $out/bin/${bin.name} ${bin.package}\n";
      trees = recipe.trees or [ ];
      # Upstream files the recipe replaces, as image-builder does it
      # (image-builder/src/package/mod.rs, `source_tree`): a writable copy
      # of the module at ./upstream, each upstream file checked against its
      # pinned sha256, the replacement copied in, and a relative `replace`.
      overlays = recipe.overlays or [ ];
      applyOverlays = lib.optionalString (overlays != [ ]) ''
        upstream_dir="$(go mod download -json ${recipe.module} | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
        cp -r "$upstream_dir" upstream
        chmod -R u+w upstream
        ${lib.concatMapStrings (o: ''
          echo "${o.upstream_sha256}  upstream/${o.file}" | sha256sum -c --quiet - \
            || { echo "overlays: upstream ${o.file} changed; port ${o.replacement}, then pin its new hash" >&2; exit 1; }
          cp ${o.replacement} upstream/${o.file}
        '') overlays}
        go mod edit -replace=${recipe.module}=./upstream
      '';
    in
    buildGoModule {
      pname = "basalt-${name}";
      version = bare;
      # The wrapper module and its overlay replacements: the sources come
      # from the vendored modules.
      src = lib.fileset.toSource {
        root = dir;
        fileset = lib.fileset.unions (
          [
            (dir + "/go.mod")
            (dir + "/go.sum")
          ]
          ++ map (o: dir + "/${o.replacement}") overlays
        );
      };
      vendorHash = vendorHashes.${name};
      proxyVendor = true;
      env.CGO_ENABLED = if cgo then "1" else "0";
      # runc: cgo with a static libseccomp and glibc.
      buildInputs = lib.optionals cgo [
        pkgs.glibc.static
        (pkgs.libseccomp.overrideAttrs (old: { dontDisableStatic = true; }))
      ];
      nativeBuildInputs = lib.optionals cgo [ pkgs.pkg-config ];
      # buildGoModule's own build installs the main module's packages; the
      # wrapper has none, so build the recipe's binaries by import path.
      buildPhase = ''
        runHook preBuild
        ${applyOverlays}
        mkdir -p $out/bin
        ${lib.concatMapStrings goBuild recipe.binaries}
        runHook postBuild
      '';
      installPhase = ''
        runHook preInstall
        ${lib.concatMapStrings (t: ''
          mkdir -p $out/lib/${name}/${t.to}
          cp -r "$(go list -m -f '{{.Dir}}' ${recipe.module})/${t.from}/." $out/lib/${name}/${t.to}/
          chmod -R u+w,go-w $out/lib/${name}/${t.to}
        '') trees}
        runHook postInstall
      '';
      doCheck = false;
      meta = {
        description = "${recipe.module} ${version}, built from Basalt's packages/${name}";
        platforms = lib.platforms.linux;
      };
    };
  names = builtins.attrNames (
    # distribution is a host-side test tool (the registry the mirror tests
    # pull through), never part of an image.
    lib.filterAttrs (
      n: t:
      t == "directory" && n != "distribution" && builtins.pathExists (../packages + "/${n}/package.toml")
    ) (
      builtins.readDir ../packages
    )
  );
in
lib.genAttrs names build

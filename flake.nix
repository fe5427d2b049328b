{
  description = "Basalt: an immutable Kubernetes node OS (machined, basaltctl, image-builder, node images)";

  # One input, pinned by flake.lock to a commit of a release branch.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # image-builder reads the kernel release from an x86 bzImage's setup
      # header; node images (and what boots them) are x86_64 only for now.
      imageSystems = [ "x86_64-linux" ];
      forSystems = names: f: lib.genAttrs names (system: f (per system));

      per =
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          basalt = pkgs.callPackage ./nix/basalt.nix { };
          basaltStatic = pkgs.callPackage ./nix/basalt.nix { static = true; };
          # Upstream components from packages/ (the same pins image-builder builds).
          components = import ./nix/packages.nix { inherit lib pkgs; };
          mkNodeImage =
            args:
            import ./nix/node-image.nix (
              {
                inherit
                  lib
                  pkgs
                  basalt
                  basaltStatic
                  components
                  ;
              }
              // args
            );
          # The default image trusts the admin keys in nix/admins.pub (one
          # OpenSSH ed25519 public key a line); without that file the build
          # fails and names it. Nothing in this repository ships a trusted key.
          adminFile =
            if builtins.pathExists ./nix/admins.pub then
              ./nix/admins.pub
            else
              pkgs.writeText "no-admin-keys-put-them-in-nix-admins.pub" ''
                # Put your admins' OpenSSH ed25519 public keys in nix/admins.pub,
                # or build with lib.mkNodeImage { admins = [ … ]; }.
              '';
          nodeImage = mkNodeImage { adminFiles = [ "${adminFile}" ]; };
          # The same node as a whole disk (disk.raw + uki.efi) and as an
          # installer ISO, booted by UEFI firmware through systemd-boot.
          nodeDisk = mkNodeImage {
            adminFiles = [ "${adminFile}" ];
            name = "basalt-node-disk";
            artifacts = [
              "uki"
              "disk"
            ];
          };
          nodeIso = mkNodeImage {
            adminFiles = [ "${adminFile}" ];
            name = "basalt-node-iso";
            artifacts = [ "iso" ];
          };
        in
        {
          inherit
            pkgs
            basalt
            basaltStatic
            components
            mkNodeImage
            nodeImage
            nodeDisk
            nodeIso
            ;
        };
    in
    {
      packages = lib.recursiveUpdate (forSystems systems (p: {
        inherit (p) basalt;
        basalt-static = p.basaltStatic;
        default = p.basalt;
      })) (forSystems imageSystems (p: p.components // {
        node-image = p.nodeImage.image;
        node-disk = p.nodeDisk.image;
        node-iso = p.nodeIso.image;
      }));

      checks = lib.recursiveUpdate (forSystems systems (
        p:
        let
          all = import ./nix/checks.nix { inherit (p) pkgs basalt mkNodeImage; inherit lib; };
        in
        {
          inherit (all) cargo-test;
        }
      )) (forSystems imageSystems (
        p:
        let
          all = import ./nix/checks.nix { inherit (p) pkgs basalt mkNodeImage; inherit lib; };
        in
        {
          inherit (all) qemu-boot;
        }
      ));

      devShells = forSystems systems (p: {
        default = import ./nix/devshell.nix { inherit (p) pkgs basalt; };
      });

      apps = lib.recursiveUpdate (forSystems systems (p: {
        inherit ((import ./nix/apps.nix {
          inherit lib;
          inherit (p) pkgs basalt;
          demoProfile = p.nodeImage.demoProfile;
        })) basaltctl;
      })) (forSystems imageSystems (p: {
        inherit ((import ./nix/apps.nix {
          inherit lib;
          inherit (p) pkgs basalt;
          demoProfile = p.nodeImage.demoProfile;
        })) demo;
      }));

      # For platform teams' own flakes:
      #   basalt.lib.mkNodeImage { system = "x86_64-linux"; admins = [ "ssh-ed25519 AAAA… ops" ]; }
      # returns { image; closure; demoProfile; } (see nix/node-image.nix).
      lib.mkNodeImage = { system, ... }@args: (per system).mkNodeImage (removeAttrs args [ "system" ]);

      formatter = forSystems systems (p: p.pkgs.nixfmt-rfc-style);
    };
}

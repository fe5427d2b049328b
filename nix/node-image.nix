# A Basalt node image from nixpkgs: nixpkgs' kernel and modules, containerd,
# runc, the CNI plugins, kubernetes' kubelet and e2fsprogs under /nix/store in
# the root image (linked from /usr/bin, /usr/sbin, /opt/cni/bin), a static
# machined as /init. The derivation itself is ./image.nix; this file only
# picks the packages and the profile.
#
# Returns { image; closure; demoProfile; } — `image` is the package.
{
  lib,
  pkgs,
  # The workspace built with glibc; image-builder runs from it.
  basalt,
  # machined for /init (see ./basalt.nix, static = true).
  basaltStatic,
  kernel ? pkgs.linuxPackages.kernel,
  # Trust roots: OpenSSH ed25519 public key lines and/or key files (one key a
  # line). image-builder refuses an image without an admin key.
  admins ? [ ],
  adminFiles ? [ ],
  readers ? [ ],
  threshold ? 1,
  # An optional baked, signed config: { path = ./worker.toml; signature = ./worker.toml.sig; }.
  config ? null,
  # Loaded by machined before the root switch, dependencies first; a module
  # built into nixpkgs' kernel is skipped, an unknown one fails the build.
  modules ? [
    "virtio_pci"
    "virtio_blk"
    "virtio_net"
    "loop"
    "squashfs"
    "overlay"
    "ext4"
    "vfat"
    "nls_cp437"
    "nls_ascii"
    "bridge"
    "veth"
    "br_netfilter"
  ],
  cniPlugins ? [
    "bandwidth"
    "bridge"
    "firewall"
    "host-local"
    "loopback"
    "portmap"
    "ptp"
    "tuning"
  ],
  sourceDateEpoch ? 1,
  name ? "basalt-node-image",
}:
let
  inherit (pkgs) stdenv;

  # Only the kubelet, not every Kubernetes component: a copy keeps the image
  # small, and Nix still finds the copy's own references (e.g. glibc).
  kubelet = pkgs.runCommand "kubelet-${pkgs.kubernetes.version}" { } ''
    install -Dm755 ${pkgs.kubernetes}/bin/kubelet $out/bin/kubelet
  '';
  containerd = lib.getBin pkgs.containerd;
  runc = lib.getBin pkgs.runc;
  cni = lib.getBin pkgs.cni-plugins;
  e2fsprogs = lib.getBin pkgs.e2fsprogs;

  payload = [
    containerd
    runc
    cni
    kubelet
    e2fsprogs
  ];
  closure = pkgs.closureInfo { rootPaths = payload; };

  bin = pkg: file: target: {
    source = "${pkg}/bin/${file}";
    inherit target;
  };

  profileFor = trust: {
    name = "nix";
    kernelImage = "${kernel}/${stdenv.hostPlatform.linux-kernel.target}";
    modulesDir = "${kernel}/lib/modules/${kernel.modDirVersion}";
    inherit modules config;
    machined = "${basaltStatic}/bin/machined";
    binaries = [
      (bin containerd "containerd" "/usr/bin/containerd")
      (bin containerd "containerd-shim-runc-v2" "/usr/bin/containerd-shim-runc-v2")
      (bin runc "runc" "/usr/bin/runc")
      (bin kubelet "kubelet" "/usr/bin/kubelet")
      (bin e2fsprogs "mkfs.ext4" "/usr/sbin/mkfs.ext4")
      (bin e2fsprogs "e2fsck" "/usr/sbin/e2fsck")
    ]
    ++ map (p: bin cni p "/opt/cni/bin/${p}") cniPlugins;
    nixPaths = map toString payload;
  } // trust;

  trust = {
    inherit
      admins
      adminFiles
      readers
      threshold
      ;
  };

  image = import ./image.nix {
    inherit (stdenv.hostPlatform) system;
    inherit (pkgs) writeText;
    inherit name sourceDateEpoch;
    imageBuilder = "${basalt}/bin/image-builder";
    profile = profileFor trust;
    closureInfo = closure;
  };
in
{
  inherit image closure;
  # The same profile with the admin key read from $BASALT_ADMIN_PUB when
  # image-builder runs (used by `nix run .#demo`, which makes a fresh key).
  demoProfile = pkgs.writeText "${name}-demo.toml" (
    import ./profile.nix (
      profileFor {
        adminFiles = [ "\${BASALT_ADMIN_PUB}" ];
        config = null;
      }
      // {
        closureFile = "${closure}/registration";
      }
    )
  );
}

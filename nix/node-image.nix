# A Basalt node image: nixpkgs' kernel and modules, e2fsprogs, clang and
# iptables, and the upstream components built from packages/ by
# ./packages.nix (containerd, runc, the CNI plugins, kubelet and the control
# plane, etcd, Cilium: the same pins as configs/images/node.toml) under
# /nix/store in the root image (linked from /usr/bin, /usr/sbin,
# /opt/cni/bin), a static machined as /init. The derivation itself is
# ./image.nix; this file only picks the packages and the profile.
#
# Returns { image; closure; demoProfile; } — `image` is the package.
{
  lib,
  pkgs,
  # The workspace built with glibc; image-builder runs from it.
  basalt,
  # machined for /init (see ./basalt.nix, static = true).
  basaltStatic,
  # The components of packages/, built by ./packages.nix.
  components,
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
    "vxlan"
  ],
  cniPlugins ? [
    "bridge"
    "host-local"
    "loopback"
    "portmap"
  ],
  sourceDateEpoch ? 1,
  name ? "basalt-node-image",
  # What to build: "kernel" "initramfs" "rootfs" "uki" "disk" "iso" (the
  # flake's node-disk and node-iso ask for the bootable media).
  artifacts ? [
    "kernel"
    "initramfs"
  ],
  version ? "0.1.0",
}:
let
  inherit (pkgs) stdenv;

  inherit (components) containerd runc kubernetes etcd cilium;
  cni = components.cni-plugins;
  e2fsprogs = lib.getBin pkgs.e2fsprogs;
  clang = pkgs.llvmPackages_19.clang-unwrapped;
  iptables = lib.getBin pkgs.iptables;

  payload = [
    containerd
    runc
    cni
    kubernetes
    etcd
    cilium
    clang
    iptables
    e2fsprogs
  ];
  closure = pkgs.closureInfo { rootPaths = payload; };

  bin = pkg: file: target: {
    source = "${pkg}/bin/${file}";
    inherit target;
  };

  # systemd-stub and systemd-boot for the UKIs and ESPs.
  efi = "${pkgs.systemd}/lib/systemd/boot/efi";

  profileFor = trust: {
    name = "nix";
    inherit artifacts version;
    stub = "${efi}/linuxx64.efi.stub";
    systemdBoot = "${efi}/systemd-bootx64.efi";
    kernelImage = "${kernel}/${stdenv.hostPlatform.linux-kernel.target}";
    modulesDir = "${kernel}/lib/modules/${kernel.modDirVersion}";
    inherit modules config;
    machined = "${basaltStatic}/bin/machined";
    binaries = [
      (bin containerd "containerd" "/usr/bin/containerd")
      (bin containerd "containerd-shim-runc-v2" "/usr/bin/containerd-shim-runc-v2")
      (bin containerd "ctr" "/usr/bin/ctr")
      (bin runc "runc" "/usr/bin/runc")
      (bin etcd "etcd" "/usr/bin/etcd")
      (bin clang "clang" "/usr/bin/clang")
      (bin e2fsprogs "mkfs.ext4" "/usr/sbin/mkfs.ext4")
      (bin e2fsprogs "e2fsck" "/usr/sbin/e2fsck")
    ]
    ++ map (p: bin kubernetes p "/usr/bin/${p}") [
      "kubelet"
      "kube-apiserver"
      "kube-controller-manager"
      "kube-scheduler"
    ]
    ++ map (p: bin cilium p "/usr/bin/${p}") [
      "cilium-agent"
      "cilium-cni"
      "cilium-operator-generic"
      "cilium-health-responder"
      "cilium-dbg"
    ]
    ++ map (p: bin iptables p "/usr/sbin/${p}") [
      "iptables"
      "iptables-save"
      "iptables-restore"
      "ip6tables"
      "ip6tables-save"
      "ip6tables-restore"
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
    # xorriso writes the ISO.
    path = "${pkgs.xorriso}/bin";
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

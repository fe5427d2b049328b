# `nix develop`: the Rust toolchain and every tool the tests, benchmarks and
# demo call (the Nix counterpart of scripts/install-deps).
{
  pkgs,
  basalt,
}:
pkgs.mkShell {
  inputsFrom = [ basalt ];
  packages = [
    pkgs.cargo
    pkgs.rustc
    pkgs.clippy
    pkgs.rustfmt
    pkgs.rust-analyzer
    pkgs.pkg-config
    # peer tools of the tests
    pkgs.openssh
    pkgs.cpio
    pkgs.zstd
    pkgs.gzip
    pkgs.xz
    pkgs.squashfsTools
    pkgs.erofs-utils
    pkgs.e2fsprogs
    pkgs.kmod
    pkgs.dosfstools
    pkgs.mtools
    pkgs.gptfdisk
    pkgs.binutils
    pkgs.nix
    # system tests and the demo
    pkgs.qemu_kvm
    pkgs.OVMF
    pkgs.containerd
    pkgs.runc
    pkgs.cni-plugins
    pkgs.dnsmasq
    pkgs.iproute2
  ];
  # glibc's static libraries, for `-C target-feature=+crt-static` builds of machined.
  buildInputs = [ pkgs.glibc.static ];
  RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
  shellHook = ''
    export CARGO_TARGET_DIR=''${CARGO_TARGET_DIR:-$PWD/target}
  '';
}

# `nix run .#basaltctl` and `nix run .#demo`.
{
  lib,
  pkgs,
  basalt,
  # The demo profile from ./node-image.nix: its admin key file is read from
  # $BASALT_ADMIN_PUB when image-builder runs.
  demoProfile,
}:
let
  inherit (pkgs.stdenv) hostPlatform;
  qemu = {
    x86_64 = {
      binary = "qemu-system-x86_64";
      machine = "q35";
      console = "ttyS0";
    };
    aarch64 = {
      binary = "qemu-system-aarch64";
      machine = "virt";
      console = "ttyAMA0";
    };
  }.${hostPlatform.parsed.cpu.name};

  # Make a fresh admin key, build the image trusting it (image-builder over
  # the Nix-generated profile; every input is already in /nix/store), boot it
  # in QEMU, pin the TLS fingerprint machined prints on the console, then
  # generate, sign and apply the example worker config, and show the status.
  demo = pkgs.writeShellApplication {
    name = "basalt-demo";
    # cleanup runs from the EXIT trap only.
    excludeShellChecks = [ "SC2317" ];
    runtimeInputs = [
      basalt
      pkgs.qemu_kvm
      pkgs.coreutils
      pkgs.gnugrep
      pkgs.gnused
    ];
    text = ''
      port=''${BASALT_DEMO_PORT:-50443}
      work=$(mktemp -d "''${TMPDIR:-/tmp}/basalt-demo.XXXXXX")
      qemu_pid=
      cleanup() {
        if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; fi
        echo "demo files (keys, config, console log): $work"
      }
      trap cleanup EXIT

      basaltctl keys gen --out "$work/admin" --comment "basalt-demo-admin"
      BASALT_ADMIN_PUB="$work/admin.pub" \
        image-builder build --profile ${demoProfile} --out "$work/image"

      accel=tcg cpu=max
      if [ -w /dev/kvm ]; then accel=kvm cpu=host; fi
      echo "booting the node image in QEMU ($accel); console: $work/console.log"
      ${qemu.binary} -machine ${qemu.machine} -accel "$accel" -cpu "$cpu" -m 2048 -smp 2 \
        -display none -monitor none -serial "file:$work/console.log" \
        -kernel "$work/image/vmlinuz" -initrd "$work/image/initramfs.cpio.zst" \
        -append "console=${qemu.console} panic=-1" \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:50443" \
        -device virtio-net-pci,netdev=n0 &
      qemu_pid=$!

      fingerprint=
      for _ in $(seq 1 300); do
        if [ -f "$work/console.log" ]; then
          fingerprint=$(grep -a -m1 'basalt: TLS fingerprint ' "$work/console.log" \
            | sed 's/.*basalt: TLS fingerprint //' | tr -d '\r ' || true)
        fi
        if [ -n "$fingerprint" ]; then break; fi
        kill -0 "$qemu_pid" || { cat "$work/console.log"; exit 1; }
        sleep 1
      done
      [ -n "$fingerprint" ] || { echo "no TLS fingerprint on the console" >&2; tail -n 40 "$work/console.log"; exit 1; }
      echo "node TLS fingerprint: $fingerprint"

      basaltctl config gen --role worker --cluster-name demo \
        --endpoint https://10.0.2.15:6443 --admin-key "$work/admin.pub" --out "$work/worker.toml"
      basaltctl config sign --key "$work/admin" "$work/worker.toml"

      node=(--node "127.0.0.1:$port" --key "$work/admin" --fingerprint "$fingerprint" \
        --known-nodes "$work/known_nodes")
      for _ in $(seq 1 60); do
        if basaltctl "''${node[@]}" version >/dev/null 2>&1; then break; fi
        sleep 1
      done
      basaltctl "''${node[@]}" apply "$work/worker.toml"
      basaltctl "''${node[@]}" status
      echo "the node keeps running; press Ctrl-C to stop it"
      wait "$qemu_pid"
    '';
  };
in
{
  basaltctl = {
    type = "app";
    program = lib.getExe' basalt "basaltctl";
  };
  demo = {
    type = "app";
    program = lib.getExe demo;
  };
}

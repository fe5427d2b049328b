//! One QEMU guest: serial console to a file, API port forwarded to
//! 127.0.0.1, killed with its process group on drop.

use crate::accel::accel;
use crate::image::Image;
use anyhow::{Context, Result, bail};
use basalt_api::sshkey::PrivateKey;
use basaltctl::client::NodeClient;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FINGERPRINT_LINE: &str = "basalt: TLS fingerprint ";

/// What a console line says, without the kernel's `[  time]` prefix and
/// machined's `machined:` tag: machined logs through /dev/kmsg, so its lines
/// reach the console as kernel records.
pub fn console_message(line: &str) -> &str {
    let line = line.trim_end_matches('\r');
    let line = match line.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(line, |(_, m)| m),
        None => line,
    };
    line.strip_prefix("machined:").unwrap_or(line).trim_start()
}

/// Console lines that mean a story failed whatever the API said: machined's
/// panic hook (which reboots, so a story could otherwise pass through it)
/// and the kernel's.
pub const PANIC_MARKERS: &[&str] = &["machined panicked", "Kernel panic"];

#[derive(Default, Clone)]
pub struct VmOptions {
    pub disks: Vec<PathBuf>,
    /// Virtio disks with a serial number, which the guest reads in
    /// `/sys/block/vdX/serial`. They are attached before the boot medium
    /// and [`VmOptions::disks`], so the guest names them first (`vda`, …).
    pub serial_disks: Vec<SerialDisk>,
    /// The serial number of the UEFI boot disk (of [`UefiBoot::Disk`],
    /// [`UefiBoot::DiskInPlace`] and [`UefiBoot::Installer`]'s disk).
    pub boot_serial: Option<String>,
    pub memory_mib: Option<u32>,
    /// Extra kernel arguments.
    pub append: String,
    /// Guest TCP ports to forward from 127.0.0.1 (besides the API's),
    /// e.g. 6443 for kubectl; see [`Vm::forwarded`].
    pub forwards: Vec<u16>,
    /// The MAC of the first (user-mode, API) NIC; QEMU's default otherwise.
    pub mac: Option<String>,
    /// A second NIC on a private link to another VM (see [`LinkNic`]).
    pub link: Option<LinkNic>,
    /// SMBIOS ids the firmware reports; QEMU's defaults otherwise.
    pub firmware: Option<FirmwareIds>,
    /// Boot through UEFI firmware (OVMF) from a disk or CD image instead of
    /// QEMU's `-kernel`/`-initrd`; `append` is then ignored (the UKI's
    /// command line is part of the image).
    pub uefi: Option<UefiBoot>,
}

/// A raw disk image used in place, with the serial number the guest sees.
#[derive(Debug, Clone)]
pub struct SerialDisk {
    pub file: PathBuf,
    /// At most 20 characters of `[A-Za-z0-9._-]` (virtio-blk's limit;
    /// no commas, which QEMU's option syntax would need escaped).
    pub serial: String,
}

/// `,serial=<serial>` for a `-device virtio-blk-pci`, or why not.
fn serial_property(serial: Option<&str>) -> Result<String> {
    let Some(serial) = serial else {
        return Ok(String::new());
    };
    if serial.is_empty()
        || serial.len() > 20
        || !serial
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("disk serial {serial:?}: expected 1–20 characters of [A-Za-z0-9._-]");
    }
    Ok(format!(",serial={serial}"))
}

/// What OVMF boots from.
#[derive(Debug, Clone)]
pub enum UefiBoot {
    /// A raw disk image (disk.raw, or an ISO written to a disk): copied per
    /// VM, sparse, and grown by [`DISK_GROWTH`] so there is room after the
    /// image's partitions, as on a real disk.
    Disk(PathBuf),
    /// An ISO attached as a CD-ROM, read-only.
    Cdrom(PathBuf),
    /// A disk image used in place (not copied): what one VM leaves on it,
    /// the next boots (e.g. after QEMU was killed).
    DiskInPlace(PathBuf),
    /// The installer's setup: `disk` (a file used in place, so a test can
    /// look at it and boot it again) first in the boot order, the ISO as a
    /// CD second. A blank disk does not boot, so the ISO does; once
    /// installed, the disk does.
    Installer { iso: PathBuf, disk: PathBuf },
}

/// How much larger than its image a [`UefiBoot::Disk`] copy is.
pub const DISK_GROWTH: u64 = 1 << 30;
/// Debian's `ovmf`: the firmware (read-only) and the template of its
/// variable store (copied per VM).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// SMBIOS type 1 (system) ids: the guest kernel shows them in
/// `/sys/class/dmi/id/product_{uuid,serial}`.
#[derive(Debug, Clone)]
pub struct FirmwareIds {
    pub uuid: String,
    pub serial: String,
}

/// One end of a point-to-point Ethernet link between two VMs: QEMU's
/// `-netdev socket` over UDP on 127.0.0.1, this end receiving on
/// `local_port` and sending to `peer_port`. UDP rather than listen/connect
/// so neither VM has to be up before the other starts.
#[derive(Debug, Clone)]
pub struct LinkNic {
    /// Distinct per VM: both ends share one Ethernet segment.
    pub mac: String,
    pub local_port: u16,
    pub peer_port: u16,
}

impl LinkNic {
    /// The two ends of a new link, with MACs `a` and `b`.
    pub fn pair(a: &str, b: &str) -> Result<(LinkNic, LinkNic)> {
        // Both sockets held at once so the two ports differ.
        let s1 = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let s2 = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let (p1, p2) = (s1.local_addr()?.port(), s2.local_addr()?.port());
        Ok((
            LinkNic {
                mac: a.into(),
                local_port: p1,
                peer_port: p2,
            },
            LinkNic {
                mac: b.into(),
                local_port: p2,
                peer_port: p1,
            },
        ))
    }
}

pub struct Vm {
    child: Child,
    pub port: u16,
    pub console_path: PathBuf,
    /// (guest port, host port) of [`VmOptions::forwards`].
    forwarded: Vec<(u16, u16)>,
    _dir: Option<tempfile_dir::TempDir>,
}

/// A tiny temp-dir holder (std only) so the crate needs no extra deps.
mod tempfile_dir {
    use std::path::PathBuf;
    pub struct TempDir(pub PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// q35 with OVMF (firmware read-only, a private copy of its variables) and
/// `boot` as the first boot device.
fn uefi_args(
    cmd: &mut Command,
    boot: &UefiBoot,
    boot_serial: Option<&str>,
    dir: &Path,
) -> Result<()> {
    let serial = serial_property(boot_serial)?;
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars)
        .with_context(|| format!("copying {OVMF_VARS} (Debian package ovmf)"))?;
    if !Path::new(OVMF_CODE).exists() {
        bail!("{OVMF_CODE} is missing (Debian package ovmf)");
    }
    cmd.args(["-machine", "q35"])
        .args([
            "-drive",
            &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        ])
        .args([
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ]);
    match boot {
        UefiBoot::Disk(image) => {
            let copy = dir.join("disk.img");
            sparse_copy(image, &copy, DISK_GROWTH)?;
            cmd.args([
                "-drive",
                &format!("file={},format=raw,if=none,id=boot0", copy.display()),
                "-device",
                &format!("virtio-blk-pci,drive=boot0,bootindex=0{serial}"),
            ]);
        }
        UefiBoot::DiskInPlace(disk) => {
            cmd.args([
                "-drive",
                &format!("file={},format=raw,if=none,id=boot0", disk.display()),
                "-device",
                &format!("virtio-blk-pci,drive=boot0,bootindex=0{serial}"),
            ]);
        }
        UefiBoot::Installer { iso, disk } => {
            cmd.args([
                "-drive",
                &format!("file={},format=raw,if=none,id=boot0", disk.display()),
                "-device",
                &format!("virtio-blk-pci,drive=boot0,bootindex=0{serial}"),
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=boot1,media=cdrom,readonly=on",
                    iso.display()
                ),
                "-device",
                "ide-cd,drive=boot1,bootindex=1",
            ]);
        }
        UefiBoot::Cdrom(iso) => {
            cmd.args([
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=boot0,media=cdrom,readonly=on",
                    iso.display()
                ),
                "-device",
                "ide-cd,drive=boot0,bootindex=0",
            ]);
        }
    }
    Ok(())
}

/// Copies `src` to `dst` writing only non-zero blocks, then makes `dst`
/// `grow` bytes longer than `src`: a multi-GB disk.raw costs what its data
/// costs.
pub fn sparse_copy(src: &Path, dst: &Path, grow: u64) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let mut from =
        std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let len = from.metadata()?.len();
    let to = std::fs::File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    to.set_len(len + grow)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match from.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|b| *b != 0) {
            to.write_all_at(&buf[..n], at)?;
        }
        at += n as u64;
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Vm {
    /// Boot `image`; the console goes to `<dir>/console.log`.
    pub fn boot(image: &Image, name: &str, opts: &VmOptions) -> Result<Vm> {
        let dir = crate::image::target_dir()
            .join("qemu-runs")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let console_path = dir.join("console.log");
        let port = free_port()?;
        let accel = accel(&image.kernel);
        let mut netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:50443");
        let mut forwarded = Vec::new();
        for guest in &opts.forwards {
            let host = free_port()?;
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            forwarded.push((*guest, host));
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            accel,
            "-m",
            &opts.memory_mib.unwrap_or(1024).to_string(),
            "-smp",
            "2",
        ])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()));
        // No option ROM on the NIC under UEFI: the firmware must not try a
        // network boot before (or instead of) the disk.
        for (i, d) in opts.serial_disks.iter().enumerate() {
            cmd.args([
                "-drive",
                &format!("file={},format=raw,if=none,id=serial{i}", d.file.display()),
                "-device",
                &format!(
                    "virtio-blk-pci,drive=serial{i}{}",
                    serial_property(Some(&d.serial))?
                ),
            ]);
        }
        let mut nic = String::from("virtio-net-pci,netdev=n0");
        match &opts.uefi {
            Some(boot) => {
                uefi_args(&mut cmd, boot, opts.boot_serial.as_deref(), &dir)?;
                nic.push_str(",romfile=");
            }
            None => {
                cmd.arg("-kernel")
                    .arg(&image.kernel)
                    .arg("-initrd")
                    .arg(&image.initramfs)
                    .arg("-append")
                    .arg(format!("console=ttyS0 panic=-1 {}", opts.append));
            }
        }
        cmd.args(["-netdev", &netdev]);
        if let Some(mac) = &opts.mac {
            nic.push_str(&format!(",mac={mac}"));
        }
        cmd.args(["-device", &nic]);
        if let Some(link) = &opts.link {
            cmd.args([
                "-netdev",
                &format!(
                    "socket,id=n1,udp=127.0.0.1:{},localaddr=127.0.0.1:{}",
                    link.peer_port, link.local_port
                ),
                "-device",
                &format!("virtio-net-pci,netdev=n1,mac={}", link.mac),
            ]);
        }
        if let Some(ids) = &opts.firmware {
            cmd.args(["-uuid", &ids.uuid])
                .args(["-smbios", &format!("type=1,serial={}", ids.serial)]);
        }
        if accel == "tcg" {
            cmd.args(["-cpu", "max"]);
        }
        for (i, d) in opts.disks.iter().enumerate() {
            cmd.args([
                "-drive",
                &format!("file={},format=raw,if=virtio,index={i}", d.display()),
            ]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.stderr"))?)
            .process_group(0);
        let child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (install qemu-system-x86)")?;
        Ok(Vm {
            child,
            port,
            console_path,
            forwarded,
            _dir: None,
        })
    }

    /// The host port that reaches guest port `guest` (one of
    /// [`VmOptions::forwards`]).
    pub fn forwarded(&self, guest: u16) -> Option<u16> {
        self.forwarded
            .iter()
            .find(|(g, _)| *g == guest)
            .map(|(_, h)| *h)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console_path).unwrap_or_default()).into_owned()
    }

    pub fn console_tail(&self, n: usize) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until `needle` has appeared `count` times on the console.
    pub fn wait_console(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.console();
            if c.matches(needle).count() >= count {
                return Ok(c);
            }
            if let Some(status) = self.child.try_wait()? {
                // It may have printed the needle just before exiting.
                let c = self.console();
                if c.matches(needle).count() >= count {
                    return Ok(c);
                }
                bail!(
                    "QEMU exited ({status}) before {needle:?} appeared; console:\n{}",
                    self.console_tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{needle:?} did not appear within {timeout:?}; console:\n{}",
                    self.console_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The fingerprint machined printed on the console for boot number `boot`
    /// (1-based).
    pub fn fingerprint(&mut self, boot: usize, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.console();
            let seen: Vec<&str> = c
                .lines()
                .filter_map(|l| console_message(l).strip_prefix(FINGERPRINT_LINE))
                .collect();
            if let Some(fp) = seen.get(boot - 1) {
                return Ok(fp.trim().to_string());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "QEMU exited ({status}) before boot {boot} printed its fingerprint; console:\n{}",
                    self.console_tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "boot {boot} printed no fingerprint within {timeout:?}; console:\n{}",
                    self.console_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A client pinned to `fingerprint`, once the API answers.
    pub fn client(
        &mut self,
        fingerprint: &str,
        key: PrivateKey,
        timeout: Duration,
    ) -> Result<NodeClient> {
        let client = NodeClient::new(&self.addr(), Some(fingerprint.to_string()), Arc::new(key))?;
        let deadline = Instant::now() + timeout;
        loop {
            match client.nonce() {
                Ok(_) => return Ok(client),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "API not ready within {timeout:?}: {e}; console:\n{}",
                        self.console_tail(40)
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "QEMU still running after {timeout:?}; console:\n{}",
                    self.console_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// QEMU's exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The first console line that shows a machined or kernel panic.
    pub fn panic_line(&self) -> Option<String> {
        self.console()
            .lines()
            .find(|l| PANIC_MARKERS.iter().any(|m| l.contains(m)))
            .map(str::to_string)
    }

    pub fn dir(&self) -> &Path {
        self.console_path.parent().unwrap_or(Path::new("."))
    }
}

impl Drop for Vm {
    /// Kills QEMU; a story whose console shows a panic fails here, however
    /// it ended, so every story checks for one.
    fn drop(&mut self) {
        let panicked = self.panic_line();
        if std::thread::panicking() || panicked.is_some() {
            eprintln!(
                "---- console of the failed VM ({}) ----\n{}",
                self.console_path.display(),
                self.console_tail(60)
            );
        }
        let pgid = -(self.child.id() as i32);
        // SAFETY: kill(2) on our child's process group; no memory involved.
        unsafe {
            libc::kill(pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if let Some(line) = panicked
            && !std::thread::panicking()
        {
            panic!("the VM's console shows a panic: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FINGERPRINT_LINE, console_message};

    #[test]
    fn console_messages_lose_the_kernel_prefix_and_machined_tag() {
        let fp = "SHA256:SlkhGEgtdZTKlgGHTARe9UV9x/RSz6peWuySMfA0wNI";
        let banner = format!("[    6.196928] {FINGERPRINT_LINE}{fp}\r");
        assert_eq!(
            console_message(&banner).strip_prefix(FINGERPRINT_LINE),
            Some(fp)
        );
        assert_eq!(
            console_message("[  104.695913] machined:  INFO Reboot now"),
            "INFO Reboot now"
        );
        assert_eq!(console_message("plain text"), "plain text");
    }
}

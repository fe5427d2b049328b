//! The node's ids, as a config's `[scope]` selector matches them
//! (`basalt_api::scope`): the SMBIOS system UUID and serial the firmware
//! reports, and the hardware addresses of physical links.

use super::Host;
use basalt_api::config::MacAddr;
use basalt_api::scope::NodeIdentity;

/// SMBIOS ids as the kernel exposes them (root-only files).
const SYSTEM_UUID: &str = "/sys/class/dmi/id/product_uuid";
const SYSTEM_SERIAL: &str = "/sys/class/dmi/id/product_serial";
const NET: &str = "/sys/class/net";

/// The node's ids: SMBIOS system UUID and serial (absent in a VM without
/// them, or as firmware placeholders) and the address of every physical
/// link (one with a `device`: virtual links such as veth, bridges and
/// Cilium's have none, and their addresses are random).
pub fn read(host: &Host) -> NodeIdentity {
    let text = |p: &str| {
        host.read(p)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let mut macs = Vec::new();
    for link in host.list_dir(NET).unwrap_or_default() {
        if !host.exists(&format!("{NET}/{link}/device")) {
            continue;
        }
        if let Some(mac) = text(&format!("{NET}/{link}/address"))
            .and_then(|a| a.trim().parse::<MacAddr>().ok())
            .filter(|m| m.0 != [0; 6])
        {
            macs.push(mac);
        }
    }
    NodeIdentity::from_firmware(
        text(SYSTEM_UUID).as_deref(),
        text(SYSTEM_SERIAL).as_deref(),
        macs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::recording::RecordingKernel;

    #[test]
    fn identity_is_firmware_ids_and_physical_links() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::with_kernel(dir.path(), std::sync::Arc::new(RecordingKernel::new("n")));
        let w = |p: &str, t: &str| {
            let p = host.path(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w(SYSTEM_UUID, "3F2504E0-4F89-11D3-9A0C-0305E82C3301\n");
        w(SYSTEM_SERIAL, "Not Specified\n");
        w("/sys/class/net/eth1/address", "52:54:00:00:00:02\n");
        w("/sys/class/net/eth1/device/vendor", "0x1af4\n");
        w("/sys/class/net/eth0/address", "52:54:00:00:00:01\n");
        w("/sys/class/net/eth0/device/vendor", "0x1af4\n");
        // Virtual: no `device`.
        w("/sys/class/net/cilium_host/address", "aa:bb:cc:dd:ee:ff\n");
        w("/sys/class/net/lo/address", "00:00:00:00:00:00\n");
        let id = read(&host);
        assert_eq!(
            id.system_uuid.as_deref(),
            Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        );
        assert_eq!(id.serial, None, "a placeholder serial is no serial");
        assert_eq!(
            id.macs,
            vec![
                "52:54:00:00:00:01".parse().unwrap(),
                "52:54:00:00:00:02".parse().unwrap()
            ]
        );
    }
}

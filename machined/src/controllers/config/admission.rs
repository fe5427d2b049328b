//! What a signed config is checked against on this node besides its
//! signatures and STATE's generation (`basalt_api::scope`): the image's
//! floor (`/etc/basalt/image-policy.toml`), the node's firmware ids and
//! link addresses (a `[scope]` selector's candidates), and a lower bound
//! of the time (`scope.not_after`).

use crate::host::Host;
use basalt_api::config::MacAddr;
use basalt_api::image_layout::IMAGE_POLICY;
use basalt_api::scope::{ImagePolicy, NodeIdentity, TrustedTime};

/// SMBIOS ids as the kernel exposes them (root-only files).
const SYSTEM_UUID: &str = "/sys/class/dmi/id/product_uuid";
const SYSTEM_SERIAL: &str = "/sys/class/dmi/id/product_serial";
const NET: &str = "/sys/class/net";

/// The image's floor. An image built before the file existed has none
/// (generation floor 0, no time); a file that does not parse refuses
/// every config rather than guess (the image is damaged).
pub fn image_policy(host: &Host) -> ImagePolicy {
    let text = match host.read(IMAGE_POLICY) {
        Ok(t) => t,
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!("{IMAGE_POLICY}: none in this image; no generation or time floor");
            return ImagePolicy::default();
        }
        Err(e) => return damaged(&e.to_string()),
    };
    match ImagePolicy::from_toml(&String::from_utf8_lossy(&text)) {
        Ok(p) => p,
        Err(e) => damaged(&e),
    }
}

fn damaged(why: &str) -> ImagePolicy {
    tracing::error!(
        "{IMAGE_POLICY}: {why}; every config will be refused as below the image's minimum generation"
    );
    ImagePolicy {
        min_generation: u64::MAX,
        built_at: 0,
    }
}

/// The node's ids: SMBIOS system UUID and serial (absent in a VM without
/// them, or as firmware placeholders) and the address of every physical
/// link (one with a `device`: virtual links such as veth, bridges and
/// Cilium's have none, and their addresses are random).
pub fn identity(host: &Host) -> NodeIdentity {
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

/// The time the node knows it is at least.
pub fn trusted_time(host: &Host, image: &ImagePolicy) -> TrustedTime {
    let clock = host.clock();
    TrustedTime::new(image.built_at, clock.unix, clock.synchronized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::clock::Clock;
    use crate::host::recording::RecordingKernel;
    use std::sync::Arc;

    fn host(clock: Clock) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::with_kernel(
            dir.path(),
            Arc::new(RecordingKernel::new("n").with_clock(clock)),
        );
        (dir, host)
    }

    #[test]
    fn identity_is_firmware_ids_and_physical_links() {
        let (_d, host) = host(Clock {
            unix: 0,
            synchronized: false,
        });
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
        let id = identity(&host);
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

    #[test]
    fn image_policy_missing_is_no_floor_and_damaged_refuses_all() {
        let (_d, host) = host(Clock {
            unix: 0,
            synchronized: false,
        });
        assert_eq!(image_policy(&host), ImagePolicy::default());
        let p = host.path(IMAGE_POLICY);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "min_generation = \"seven\"\n").unwrap();
        assert_eq!(image_policy(&host).min_generation, u64::MAX);
        std::fs::write(&p, "min_generation = 7\nbuilt_at = 1764547200\n").unwrap();
        assert_eq!(
            image_policy(&host),
            ImagePolicy {
                min_generation: 7,
                built_at: 1_764_547_200
            }
        );
    }

    #[test]
    fn the_clock_counts_only_when_synchronized() {
        let image = ImagePolicy {
            min_generation: 0,
            built_at: 1_000,
        };
        let (_d, unsynced) = host(Clock {
            unix: 5_000,
            synchronized: false,
        });
        assert_eq!(trusted_time(&unsynced, &image).at_least, 1_000);
        let (_d, synced) = host(Clock {
            unix: 5_000,
            synchronized: true,
        });
        assert_eq!(trusted_time(&synced, &image).at_least, 5_000);
    }
}

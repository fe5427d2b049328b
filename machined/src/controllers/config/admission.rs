//! What a signed config is checked against on this node besides its
//! signatures and STATE's generation (`basalt_api::scope`): the image's
//! floor (`/etc/basalt/image-policy.toml`) and a lower bound of the time
//! (`scope.not_after`). The node's ids, a `[scope]` selector's candidates,
//! are read by `crate::host::identity`.

use crate::host::Host;
use basalt_api::image_layout::IMAGE_POLICY;
use basalt_api::scope::{ImagePolicy, TrustedTime};

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
    fn image_policy_missing_is_no_floor_and_damaged_refuses_all() {
        let (_d, host) = host(Clock {
            unix: 0,
            synchronized: false,
        });
        assert_eq!(image_policy(&host), ImagePolicy::default());
        host.write_atomic(IMAGE_POLICY, b"min_generation = \"seven\"\n", 0o644)
            .unwrap();
        assert_eq!(image_policy(&host).min_generation, u64::MAX);
        host.write_atomic(
            IMAGE_POLICY,
            b"min_generation = 7\nbuilt_at = 1764547200\n",
            0o644,
        )
        .unwrap();
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

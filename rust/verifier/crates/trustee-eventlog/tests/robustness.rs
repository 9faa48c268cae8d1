//! Malformed input never panics: truncation at every length, seeded byte
//! flips, and checks that each rejection names the failed check.

mod common;

use common::builder::{rich_log, LogBuilder, SHA1, SHA256, SHA384};
use common::{read_log, Rng};
use trustee_eventlog::{parse, EventLogError, HashAlgorithm, RecordError};

/// Parses and, on success, exercises everything a caller would use.
fn exercise(bytes: &[u8]) -> Result<usize, EventLogError> {
    let log = parse(bytes)?;
    let _ = log.to_json();
    let _ = log.replay(HashAlgorithm::Sha384);
    let _ = log.check_rtmrs(&[[0u8; 48]; 4]);
    Ok(log.events.len())
}

#[test]
fn synthetic_log_decodes_every_type() {
    let (bytes, _) = rich_log();
    let log = parse(&bytes).expect("synthetic log parses");
    assert_eq!(log.events.len(), 15);
    let json = log.claims_json();
    let paths = &json[6]["details"]["device_paths"];
    assert_eq!(
        paths,
        &serde_json::json!([
            "ACPI(PNP0A03,0)",
            "Pci(0,1)",
            "USB(2,3)",
            "Mac(5254001234,0x01)",
            "IPv4(1.1.168.192,TCP,Static,2.1.168.192,0,16777215)",
            "FibreEx(0x0707070707070707,0x0707070707070707)",
            "HD(1,GPT,ABABABAB-ABAB-ABAB-ABAB-ABABABABABAB,0x800,0x1000)",
            "VenMedia(42424242-4242-4242-4242-424242424242,4242)",
            "BBS(HARD_DRIVE,Disk,1)",
            "Path(3,2,00000000)",
            "File(\\EFI\\BOOT\\BOOTX64.EFI)"
        ])
    );
    assert_eq!(json[0]["details"]["string"], "td_hob x");
    assert_eq!(json[1]["details"]["string"], "Fv(ABCDEF)");
    assert_eq!(json[1]["digest_matches_event"], false);
    assert_eq!(json[0]["digest_matches_event"], true);
    assert_eq!(json[9]["details"]["string"], "linux");
    assert_eq!(json[13]["details"]["data"]["content"]["k"], 1);
    assert_eq!(json[14]["details"]["variable_data"], "Y2VydA==");
    let algs: Vec<_> = json[0]["digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs, ["SHA-256", "SHA-384", "SM3"]);
    let sm3 = log.replay(HashAlgorithm::Sm3);
    assert_eq!(sm3.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
}

#[test]
fn truncation_at_every_length() {
    let (bytes, builder) = rich_log();
    let content_end = builder.bytes.len();
    let full = parse(&bytes).unwrap();
    for len in 0..=bytes.len() {
        match exercise(&bytes[..len]) {
            Ok(n) => {
                // Only cuts at a record boundary (or inside the padding) parse.
                let boundary = builder.record_starts.contains(&len) || len >= content_end;
                assert!(boundary, "truncation at {len} parsed ({n} events)");
                assert!(n <= full.events.len());
            }
            Err(e) => {
                assert!(len < content_end + 8, "truncation at {len} failed: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn truncation_of_real_log() {
    let Some(bytes) = read_log("CCEL_data_ovmf") else {
        return;
    };
    // The populated part of the log plus some padding.
    let end = (0..bytes.len())
        .rev()
        .find(|&i| bytes[i] != 0xFF && bytes[i] != 0)
        .map_or(bytes.len(), |i| (i + 64).min(bytes.len()));
    for len in 0..=end {
        let _ = exercise(&bytes[..len]);
    }
}

#[test]
fn seeded_byte_flips() {
    let (synthetic, _) = rich_log();
    // (input, iterations): real logs are larger and hashing is slow in debug
    // builds, so they get fewer rounds.
    let mut inputs = vec![(synthetic, 3000)];
    for name in ["CCEL_data_ovmf", "CCEL_AAEL_alibabacloud"] {
        if let Some(b) = read_log(name) {
            inputs.push((b[..b.len().min(12 * 1024)].to_vec(), 600));
        }
    }
    let mut rng = Rng::new(0x5eed_1234_abcd_0001);
    let (mut ok, mut err) = (0usize, 0usize);
    for (input, rounds) in &inputs {
        for _ in 0..*rounds {
            let mut m = input.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                m[at] ^= 1 << rng.below(8);
            }
            match exercise(&m) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok} err {err}");
}

fn record_error(bytes: &[u8]) -> (usize, RecordError, String) {
    match parse(bytes).unwrap_err() {
        e @ EventLogError::Record { .. } => {
            let msg = e.to_string();
            let EventLogError::Record { event, source, .. } = e else {
                unreachable!()
            };
            (event, source, msg)
        }
        other => panic!("expected a record error, got {other}"),
    }
}

#[test]
fn rejection_messages_name_the_check() {
    // Unknown event type in a record.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let log = b
        .event(1, 0x4, &[0; 4], None)
        .event(1, 0x77, b"x", None)
        .finish(0, 8);
    let (event, source, msg) = record_error(&log);
    assert_eq!(event, 1);
    assert_eq!(source, RecordError::UnknownEventType { value: 0x77 });
    assert!(msg.contains("0x77"), "{msg}");

    // SHA-1 digests cannot be checked.
    let mut b = LogBuilder::new(&[(SHA1, 20)]);
    let (_, source, msg) = record_error(&b.event(1, 0x4, &[0; 4], None).finish(0, 8));
    assert!(matches!(
        source,
        RecordError::UnsupportedDigestAlgorithm { .. }
    ));
    assert!(msg.contains("SHA-1"), "{msg}");

    // A digest algorithm the spec-ID event did not declare.
    let mut b = LogBuilder::new(&[(SHA256, 32)]);
    let mut log = b.event(1, 0x4, &[0; 4], None).finish(0, 8);
    let start = b.record_starts[0];
    log[start + 12..start + 14].copy_from_slice(&SHA384.to_le_bytes());
    let (_, source, _) = record_error(&log);
    assert!(
        matches!(source, RecordError::UndeclaredAlgorithm { .. }),
        "{source}"
    );

    // Neither an end marker nor the exact end.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let (event, source, msg) = record_error(&b.event(1, 0x4, &[0; 4], None).finish(0xAA, 5));
    assert_eq!(
        (event, source),
        (1, RecordError::MissingEndMarker { remaining: 5 })
    );
    assert!(msg.contains("5 bytes remain"), "{msg}");

    // Exact end without a marker is fine.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    assert_eq!(
        parse(&b.event(1, 0x4, &[0; 4], None).finish(0, 0))
            .unwrap()
            .events
            .len(),
        1
    );

    // Event data longer than the log.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let mut log = b.event(1, 0x4, &[0; 4], None).finish(0, 0);
    let n = log.len();
    log[n - 8..n - 4].copy_from_slice(&1000u32.to_le_bytes());
    let (_, source, msg) = record_error(&log);
    assert!(matches!(source, RecordError::Truncated(_)), "{source}");
    assert!(msg.contains("event data") && msg.contains("1000"), "{msg}");

    // Upstream panics on a zero-length BLOB2 description; we reject it.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let (_, source, msg) = record_error(&b.event(1, 0x8000_000A, &[0, 1, 2], None).finish(0, 8));
    assert!(matches!(source, RecordError::Details { .. }), "{source}");
    assert!(
        msg.contains("EV_EFI_PLATFORM_FIRMWARE_BLOB2") && msg.contains("is 0"),
        "{msg}"
    );

    // Invalid UTF-8 in EV_EFI_ACTION.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let (_, _, msg) = record_error(&b.event(1, 0x8000_0007, b"ok\xff", None).finish(0, 8));
    assert!(msg.contains("UTF-8") && msg.contains("byte 2"), "{msg}");
}

#[test]
fn header_rejections() {
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let good = b.finish(0, 8);
    assert!(parse(&good).unwrap().events.is_empty());

    let mut bad = good.clone();
    bad[4] = 0x77;
    assert_eq!(
        parse(&bad).unwrap_err(),
        EventLogError::HeaderUnknownEventType { value: 0x77 }
    );

    // Unknown algorithm id in the spec-ID list (first entry at 32 + 28).
    let mut bad = good.clone();
    bad[60] = 0x99;
    assert!(matches!(
        parse(&bad).unwrap_err(),
        EventLogError::SpecIdUnknownAlgorithm {
            id: 0x99,
            position: 0
        }
    ));

    // Declared spec-ID size larger than its content.
    let mut b = LogBuilder::new(&[(SHA384, 48)]);
    let mut bad = b.finish(0, 8);
    let size = u32::from_le_bytes(bad[28..32].try_into().unwrap());
    bad[28..32].copy_from_slice(&(size + 1).to_le_bytes());
    let e = parse(&bad).unwrap_err();
    assert!(matches!(e, EventLogError::SpecIdSizeMismatch { .. }), "{e}");

    for len in [0, 3, 7, 27, 31, 40] {
        assert!(matches!(
            parse(&good[..len]).unwrap_err(),
            EventLogError::HeaderTruncated(_)
        ));
    }
}

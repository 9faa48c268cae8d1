//! RTMR replay against the values upstream's tests expect.

mod common;

use common::read_log;
use trustee_eventlog::HashAlgorithm;

const ZERO: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

fn rtmrs(hexes: [&str; 4]) -> [[u8; 48]; 4] {
    hexes.map(|h| hex::decode(h).expect("hex").try_into().expect("48 bytes"))
}

fn check_replay(log: &str, expected: [&str; 4]) {
    let Some(bytes) = read_log(log) else { return };
    let parsed = trustee_eventlog::parse(&bytes).unwrap_or_else(|e| panic!("{log}: {e}"));
    let expected = rtmrs(expected);
    parsed
        .check_rtmrs(&expected)
        .unwrap_or_else(|e| panic!("{log}: {e}"));
    let replayed = parsed.replay(HashAlgorithm::Sha384);
    for (n, value) in expected.iter().enumerate() {
        let index = n as u32 + 1;
        let got = replayed.get(&index).cloned().unwrap_or_else(|| vec![0; 48]);
        assert_eq!(got, value.to_vec(), "{log}: RTMR{n}");
        assert_eq!(parsed.replay_index(index, HashAlgorithm::Sha384), got);
    }
}

#[test]
fn replay_td_shim() {
    check_replay(
        "CCEL_data",
        [
            "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
            "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
            ZERO,
            ZERO,
        ],
    );
}

#[test]
fn replay_ovmf() {
    check_replay(
        "CCEL_data_ovmf",
        [
            "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
            "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
            "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
            ZERO,
        ],
    );
}

#[test]
fn replay_grub() {
    check_replay(
        "CCEL_data_grub",
        [
            "cec0a104f691f60da2387fea3c2de00c4ac035e2bb479ff02edcce69039d9e9907f0b3e55031da3dc7038f423adebd79",
            "6c289e0c62182d41ebe97bdbc9872d10998a08eaa86adcdc684001a363207ee72942c7522cdf00a4bbc3d784bed7b670",
            "08919d017ba0e52cd6d966351c7de16fe76c1d3d3d3da4554239e4c7d16cb8b82a94e7eaea3a0e6e18eb690b999fd31e",
            ZERO,
        ],
    );
}

/// Reference values with one register altered: the error names that register
/// and carries both the reference and the replayed value.
fn check_mismatch(log: &str, rtmr0: &str, rtmr1: &str, wrong_index: u32, replayed: &str) {
    let Some(bytes) = read_log(log) else { return };
    let parsed = trustee_eventlog::parse(&bytes).unwrap();
    let r0 = hex::decode(rtmr0).unwrap();
    let r1 = hex::decode(rtmr1).unwrap();
    let err = parsed
        .check_registers(HashAlgorithm::Sha384, &[(1, &r0), (2, &r1)])
        .unwrap_err();
    let given = if wrong_index == 1 { rtmr0 } else { rtmr1 };
    assert_eq!(err.index, wrong_index);
    assert_eq!(err.register, format!("RTMR{}", wrong_index - 1));
    assert_eq!(hex::encode(&err.replayed), replayed);
    assert_eq!(hex::encode(&err.expected), given);
    let msg = err.to_string();
    assert!(msg.contains(replayed) && msg.contains(given), "{msg}");
    assert!(msg.contains(&format!("RTMR{}", wrong_index - 1)), "{msg}");

    // Same failure through the TDX entry point.
    let mut quote = [[0u8; 48]; 4];
    quote[0].copy_from_slice(&r0);
    quote[1].copy_from_slice(&r1);
    assert_eq!(parsed.check_rtmrs(&quote).unwrap_err(), err);
}

#[test]
fn replay_error_td_shim_rtmr0() {
    check_mismatch(
        "CCEL_data",
        "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f5",
        "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
        1,
        "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
    );
}

#[test]
fn replay_error_td_shim_rtmr1() {
    check_mismatch(
        "CCEL_data",
        "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
        "2fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
        2,
        "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
    );
}

/// The CSV log carries only SM3 digests: SHA-384 replay is all zeros, SM3
/// replay extends the registers.
#[test]
fn csv_sm3_replay() {
    let Some(bytes) = read_log("CCEL_data_csv") else {
        return;
    };
    let parsed = trustee_eventlog::parse(&bytes).unwrap();
    for (_, v) in parsed.replay(HashAlgorithm::Sha384) {
        assert_eq!(v, vec![0u8; 48]);
    }
    let sm3 = parsed.replay(HashAlgorithm::Sm3);
    assert!(sm3.values().any(|v| v.iter().any(|&b| b != 0)));
    for (index, value) in &sm3 {
        assert_eq!(value.len(), 32);
        assert_eq!(&parsed.replay_index(*index, HashAlgorithm::Sm3), value);
    }
}

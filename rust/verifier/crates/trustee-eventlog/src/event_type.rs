//! TCG PC Client event types. Only the types listed here are accepted: an
//! unknown type makes the whole log fail to parse, as it does upstream.

use std::fmt;

/// A known TCG event type (construct with [`EventType::from_u32`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(u32);

const NAMES: &[(u32, &str)] = &[
    (0x0, "EV_PREBOOT_CERT"),
    (0x1, "EV_POST_CODE"),
    (0x2, "EV_UNUSED"),
    (0x3, "EV_NO_ACTION"),
    (0x4, "EV_SEPARATOR"),
    (0x5, "EV_ACTION"),
    (0x6, "EV_EVENT_TAG"),
    (0x7, "EV_S_CRTM_CONTENTS"),
    (0x8, "EV_S_CRTM_VERSION"),
    (0x9, "EV_CPU_MICROCODE"),
    (0xA, "EV_PLATFORM_CONFIG_FLAGS"),
    (0xB, "EV_TABLE_OF_DEVICES"),
    (0xC, "EV_COMPACT_HASH"),
    (0xD, "EV_IPL"),
    (0xE, "EV_IPL_PARTITION_DATA"),
    (0xF, "EV_NONHOST_CODE"),
    (0x10, "EV_NONHOST_CONFIG"),
    (0x11, "EV_NONHOST_INFO"),
    (0x12, "EV_OMIT_BOOT_DEVICE_EVENTS"),
    (0x8000_0000, "EV_EFI_EVENT_BASE"),
    (0x8000_0001, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
    (0x8000_0002, "EV_EFI_VARIABLE_BOOT"),
    (0x8000_0003, "EV_EFI_BOOT_SERVICES_APPLICATION"),
    (0x8000_0004, "EV_EFI_BOOT_SERVICES_DRIVER"),
    (0x8000_0005, "EV_EFI_RUNTIME_SERVICES_DRIVER"),
    (0x8000_0006, "EV_EFI_GPT_EVENT"),
    (0x8000_0007, "EV_EFI_ACTION"),
    (0x8000_0008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"),
    (0x8000_0009, "EV_EFI_HANDOFF_TABLES"),
    (0x8000_000A, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"),
    (0x8000_000B, "EV_EFI_HANDOFF_TABLES2"),
    (0x8000_000C, "EV_EFI_VARIABLE_BOOT2"),
    (0x8000_0010, "EV_EFI_HCRTM_EVENT"),
    (0x8000_00E0, "EV_EFI_VARIABLE_AUTHORITY"),
    (0x8000_00E1, "EV_EFI_SPDM_FIRMWARE_BLOB"),
    (0x8000_00E2, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
];

impl EventType {
    pub const EV_POST_CODE: EventType = EventType(0x1);
    pub const EV_NO_ACTION: EventType = EventType(0x3);
    pub const EV_SEPARATOR: EventType = EventType(0x4);
    pub const EV_ACTION: EventType = EventType(0x5);
    pub const EV_EVENT_TAG: EventType = EventType(0x6);
    pub const EV_PLATFORM_CONFIG_FLAGS: EventType = EventType(0xA);
    pub const EV_COMPACT_HASH: EventType = EventType(0xC);
    pub const EV_IPL: EventType = EventType(0xD);
    pub const EV_OMIT_BOOT_DEVICE_EVENTS: EventType = EventType(0x12);
    pub const EV_EFI_VARIABLE_DRIVER_CONFIG: EventType = EventType(0x8000_0001);
    pub const EV_EFI_VARIABLE_BOOT: EventType = EventType(0x8000_0002);
    pub const EV_EFI_BOOT_SERVICES_APPLICATION: EventType = EventType(0x8000_0003);
    pub const EV_EFI_ACTION: EventType = EventType(0x8000_0007);
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: EventType = EventType(0x8000_000A);
    pub const EV_EFI_HANDOFF_TABLES2: EventType = EventType(0x8000_000B);
    pub const EV_EFI_VARIABLE_BOOT2: EventType = EventType(0x8000_000C);
    pub const EV_EFI_VARIABLE_AUTHORITY: EventType = EventType(0x8000_00E0);

    /// `None` for a value outside the TCG PC Client table.
    pub fn from_u32(value: u32) -> Option<Self> {
        NAMES
            .iter()
            .any(|&(v, _)| v == value)
            .then_some(EventType(value))
    }

    pub fn value(self) -> u32 {
        self.0
    }

    /// Name used in the JSON (`type_name`), e.g. `EV_SEPARATOR`.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|&&(v, _)| v == self.0)
            .map_or("EV_UNKNOWN", |&(_, n)| n)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.name(), self.0)
    }
}

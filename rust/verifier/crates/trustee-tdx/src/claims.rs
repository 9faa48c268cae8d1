//! Claims JSON for the quote part, shaped like upstream Trustee's
//! `generate_parsed_claim` (upstream's TDX claims) without the event log and without the
//! DCAP supplemental claims.

use serde_json::{json, Map, Value};

use crate::{pck, Quote};

/// Build the upstream-shaped TDX claims for a parsed quote.
///
/// Produces `quote` (`header`, `body`, and for v5 `type`/`size`),
/// `td_attributes` (decoded bits), `report_data`, `init_data`, and
/// `platform_instance_id` when the PCK leaf carries one (Platform-CA chains).
/// `uefi_event_logs` and DCAP-appraisal claims are not produced here.
pub fn claims(quote: &Quote) -> Value {
    claims_with(
        quote,
        pck::platform_instance_id(&quote.signature.pck_cert_chain),
    )
}

/// [`claims`] with the PlatformInstanceID (as [`pck::platform_instance_id`]
/// reports it) supplied by a caller that already decoded the PCK chain.
pub(crate) fn claims_with(quote: &Quote, platform_instance_id: Option<[u8; 16]>) -> Value {
    let h = &quote.header;
    let header = json!({
        "version": hex::encode(h.version.to_le_bytes()),
        "att_key_type": hex::encode(h.att_key_type.to_le_bytes()),
        "tee_type": hex::encode(h.tee_type.to_le_bytes()),
        "reserved": hex::encode(h.reserved),
        "vendor_id": hex::encode(h.vendor_id),
        "user_data": hex::encode(h.user_data),
    });

    let b = &quote.body;
    let mut body = Map::new();
    let mut put = |k: &str, v: &[u8]| {
        body.insert(k.to_string(), Value::String(hex::encode(v)));
    };
    put("tcb_svn", &b.tee_tcb_svn);
    put("mr_seam", &b.mr_seam);
    put("mrsigner_seam", &b.mrsigner_seam);
    put("seam_attributes", &b.seam_attributes);
    put("td_attributes", &b.td_attributes);
    put("xfam", &b.xfam);
    put("mr_td", &b.mr_td);
    put("mr_config_id", &b.mr_config_id);
    put("mr_owner", &b.mr_owner);
    put("mr_owner_config", &b.mr_owner_config);
    put("rtmr_0", &b.rtmr[0]);
    put("rtmr_1", &b.rtmr[1]);
    put("rtmr_2", &b.rtmr[2]);
    put("rtmr_3", &b.rtmr[3]);
    put("report_data", &b.report_data);
    if let Some(ext) = &b.v15 {
        put("tee_tcb_svn2", &ext.tee_tcb_svn2);
        put("mr_servicetd", &ext.mr_servicetd);
    }

    let mut q = Map::new();
    q.insert("header".into(), header);
    q.insert("body".into(), Value::Object(body));
    if let Some(d) = &quote.body_descriptor {
        q.insert(
            "type".into(),
            Value::String(hex::encode(d.body_type.to_le_bytes())),
        );
        q.insert(
            "size".into(),
            Value::String(hex::encode(d.body_size.to_le_bytes())),
        );
    }

    let a = b.td_attributes_decoded();
    let mut out = Map::new();
    out.insert("quote".into(), Value::Object(q));
    out.insert(
        "td_attributes".into(),
        json!({
            "debug": a.debug,
            "septve_disable": a.septve_disable,
            "protection_keys": a.protection_keys,
            "key_locker": a.key_locker,
            "perfmon": a.perfmon,
        }),
    );
    out.insert(
        "report_data".into(),
        Value::String(hex::encode(b.report_data)),
    );
    out.insert(
        "init_data".into(),
        Value::String(hex::encode(b.mr_config_id)),
    );
    if let Some(piid) = platform_instance_id {
        out.insert(
            "platform_instance_id".into(),
            Value::String(hex::encode(piid)),
        );
    }
    Value::Object(out)
}

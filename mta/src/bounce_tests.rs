//! DSN tests: the report parsed back with mail-parser, NOTIFY and RET honoured.

use super::*;
use mail_parser::MimeHeaders;

fn stored(ret: Option<&str>) -> Stored {
    Stored {
        id: "ABC123".into(),
        envelope: Envelope {
            sender: "alice@here.test".into(),
            recipients: vec![
                Rcpt {
                    address: "bob@there.test".into(),
                    local: false,
                    notify: vec![],
                    orcpt: Some("Bob@There.test".into()),
                },
                Rcpt {
                    address: "carol@there.test".into(),
                    local: false,
                    notify: vec!["NEVER".into()],
                    orcpt: None,
                },
            ],
            ret: ret.map(str::to_string),
            envid: Some("env-1".into()),
            body_8bit: false,
            smtputf8: false,
        },
        received: "Tue, 24 Nov 2026 09:30:00 +0000".into(),
        auth_user: None,
        arrived: 1,
    }
}

const BODY: &[u8] = b"Received: from x\nSubject: lunch\nFrom: alice@here.test\n\nsee you at noon\n";

fn dsn(ret: Option<&str>) -> Vec<u8> {
    let s = stored(ret);
    let entries = [Entry {
        rcpt: &s.envelope.recipients[0],
        diagnostic: "550 5.1.1 <bob@there.test>: no such user".into(),
        remote: Some("mx.there.test".into()),
    }];
    build(
        "mx.here.test",
        &s,
        BODY,
        &entries,
        Kind::Failure,
        "Tue, 24 Nov 2026 10:00:00 +0000",
    )
}

#[test]
fn dsn_is_a_multipart_report_with_delivery_status() {
    let bytes = dsn(None);
    let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    let parts: Vec<String> = msg
        .parts
        .iter()
        .skip(1)
        .map(|p| {
            let ct = p.content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        parts[..3],
        ["text/plain", "message/delivery-status", "message/rfc822"]
    );
    let text = String::from_utf8(bytes.clone()).unwrap();
    for field in [
        "Reporting-MTA: dns; mx.here.test\n",
        "Original-Envelope-Id: env-1\n",
        "Arrival-Date: Tue, 24 Nov 2026 09:30:00 +0000\n",
        "Final-Recipient: rfc822; bob@there.test\n",
        "Original-Recipient: rfc822; Bob@There.test\n",
        "Action: failed\n",
        "Status: 5.1.1\n",
        "Remote-MTA: dns; mx.there.test\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@there.test>: no such user\n",
    ] {
        assert!(text.contains(field), "{field:?} missing in\n{text}");
    }
    let attached = (0..msg.attachment_count() as u32)
        .filter_map(|i| msg.attachment(i))
        .find_map(|a| a.message())
        .expect("the original");
    assert_eq!(attached.subject(), Some("lunch"));
    assert!(text.contains("see you at noon"));
}

#[test]
fn ret_hdrs_returns_the_header_only() {
    let text = String::from_utf8(dsn(Some("HDRS"))).unwrap();
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(text.contains("Subject: lunch"));
    assert!(!text.contains("see you at noon"));
}

#[test]
fn notify_decides_who_is_reported() {
    let s = stored(None);
    assert!(wants(&s.envelope.recipients[0], Kind::Failure));
    assert!(!wants(&s.envelope.recipients[0], Kind::Delay));
    assert!(!wants(&s.envelope.recipients[1], Kind::Failure));
    let mut r = s.envelope.recipients[0].clone();
    r.notify = vec!["SUCCESS".into()];
    assert!(!wants(&r, Kind::Failure));
    r.notify = vec!["DELAY".into(), "FAILURE".into()];
    assert!(wants(&r, Kind::Failure) && wants(&r, Kind::Delay));
}

#[test]
fn status_codes_from_replies() {
    assert_eq!(status_of("550 5.1.1 no"), "5.1.1");
    assert_eq!(status_of("550 no such user"), "5.0.0");
    assert_eq!(status_of("451 4.4.7 expired"), "4.4.7");
    assert_eq!(status_of("452 later"), "4.0.0");
}

#[test]
fn expiry_fails_what_is_pending() {
    let s = stored(None);
    let mut status = Status {
        recipients: vec![RcptState::Pending, RcptState::Delivered],
        last_error: Some("mx.there.test said 451 busy".into()),
        ..Status::default()
    };
    expire(&s, &mut status, Duration::from_secs(3600));
    match &status.recipients[0] {
        RcptState::Failed {
            reply,
            reported: false,
            ..
        } => {
            assert!(
                reply.starts_with("451 4.4.7 message expired after 1h"),
                "{reply}"
            );
            assert!(reply.contains("busy"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status.recipients[1], RcptState::Delivered);
    let mut fresh = stored(None);
    fresh.arrived = now_secs();
    let mut status = Status {
        recipients: vec![RcptState::Pending],
        ..Status::default()
    };
    expire(&fresh, &mut status, Duration::from_secs(3600));
    assert_eq!(status.recipients[0], RcptState::Pending);
}

//! The protocol against transcripts of etcd 3.4: routing, parsing, answers, waits,
//! limits and expiry.

use super::*;

const LIMITS: Limits = Limits {
    max_tokens: 4,
    max_members: 5,
};
const TOK: &str = "0123456789abcdef0123456789abcdef";

fn req<'a>(method: &'a str, path: &'a str, query: Option<&'a str>, body: &'a [u8]) -> Request<'a> {
    Request {
        method,
        path,
        query,
        content_type: Some("application/x-www-form-urlencoded"),
        body,
        admin: true,
    }
}

fn with_token(size: u32) -> Registry {
    let mut r = Registry {
        index: 10,
        ..Registry::default()
    };
    let c = r.plan_token(TOK, size, 1000, 3600, &LIMITS).unwrap();
    r.apply(&c);
    r
}

fn register(r: &mut Registry, id: &str, value: &str) -> Result<Reply, Refusal> {
    let c = r.plan_register(TOK, id, value, 1000, &LIMITS)?;
    r.apply(&c);
    Ok(r.change_reply(&c))
}

#[test]
fn both_url_styles_route_to_the_same_keys() {
    for base in [format!("/{TOK}"), format!("/v2/keys/_etcd/registry/{TOK}")] {
        let op = parse(
            &req("GET", &format!("{base}/_config/size"), None, b""),
            &LIMITS,
            0,
        );
        assert_eq!(
            op,
            Ok(Op::Get {
                token: TOK.into(),
                key: Key::Size,
                sorted: false
            })
        );
        // etcd's client sends exactly these parameters for its recursive wait.
        let op = parse(
            &req(
                "GET",
                &base,
                Some("recursive=true&wait=true&waitIndex=12"),
                b"",
            ),
            &LIMITS,
            0,
        );
        assert_eq!(
            op,
            Ok(Op::Wait {
                token: TOK.into(),
                key: Key::Dir,
                recursive: true,
                since: Some(12)
            })
        );
        let op = parse(
            &req(
                "PUT",
                &format!("{base}/8e9e05c52164694d"),
                Some("prevExist=false"),
                b"value=infra0%3Dhttp%3A%2F%2F10.0.1.10%3A2380",
            ),
            &LIMITS,
            0,
        );
        assert_eq!(
            op,
            Ok(Op::Register {
                token: TOK.into(),
                id: "8e9e05c52164694d".into(),
                value: "infra0=http://10.0.1.10:2380".into()
            })
        );
    }
}

#[test]
fn registry_listing_and_other_keys_are_refused() {
    let r = parse(
        &req("GET", "/v2/keys/_etcd/registry", None, b""),
        &LIMITS,
        7,
    )
    .unwrap_err();
    assert_eq!(r.status, 401);
    assert!(r.auth_challenge);
    let r = parse(&req("GET", "/v2/keys/foo", None, b""), &LIMITS, 7).unwrap_err();
    assert_eq!(
        r.body,
        "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/foo\",\"index\":7}\n"
    );
    let r = parse(&req("GET", "/short", None, b""), &LIMITS, 7).unwrap_err();
    assert_eq!(r.status, 404);
    let r = parse(&req("GET", &format!("/{TOK}/../x"), None, b""), &LIMITS, 7).unwrap_err();
    assert_eq!(r.status, 404);
}

#[test]
fn new_sizes() {
    let p = |q: &str| parse(&req("GET", "/new", Some(q), b""), &LIMITS, 0);
    assert_eq!(p(""), Ok(Op::New { size: 3 }));
    assert_eq!(p("size=5"), Ok(Op::New { size: 5 }));
    for bad in ["size=0", "size=6", "size=-1", "size=x", "size=99999999999"] {
        assert_eq!(p(bad).unwrap_err().status, 400, "{bad}");
    }
    let mut r = req("GET", "/new", None, b"");
    r.admin = false;
    let reply = parse(&r, &LIMITS, 0).unwrap_err();
    assert_eq!(reply.status, 401);
    assert!(reply.auth_challenge);
}

#[test]
fn request_errors_match_etcd() {
    let e = parse(
        &req(
            "GET",
            &format!("/{TOK}"),
            Some("wait=true&waitIndex=x"),
            b"",
        ),
        &LIMITS,
        9,
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(
        e.body,
        "{\"errorCode\":203,\"message\":\"The given index in POST form is not a number\",\"cause\":\"invalid value for \\\"waitIndex\\\"\",\"index\":0}\n"
    );
    let e = parse(
        &req("GET", &format!("/{TOK}"), Some("recursive=yes"), b""),
        &LIMITS,
        9,
    )
    .unwrap_err();
    assert!(e.body.contains("\"errorCode\":209"), "{}", e.body);
    let e = parse(
        &req(
            "PUT",
            &format!("/{TOK}/abc"),
            Some("wait=true"),
            b"value=a=http://h:1",
        ),
        &LIMITS,
        9,
    )
    .unwrap_err();
    assert!(e.body.contains("can only be used with GET"), "{}", e.body);
    // A body is only a form when it says so, as with Go's ParseForm.
    let path = format!("/{TOK}/abc");
    let mut r = req("PUT", &path, None, b"value=a=http://h:1");
    r.content_type = Some("text/plain");
    assert!(parse(&r, &LIMITS, 9)
        .unwrap_err()
        .body
        .contains("empty value"));
}

#[test]
fn malformed_member_values_are_refused() {
    for bad in [
        "",
        "infra0",
        "=http://h:1",
        "infra0=h:1",
        "infra0=ftp://h:1",
        "infra0=http://h",
        "infra0=http://h:x",
        "infra0=http://h:1/path",
        "infra0=http://:1",
        "infra0=http://::1:2380",
        "a=http://h:1,b=http://h:2",
        "infra0=http://h:1\n",
    ] {
        assert!(check_member_value(bad).is_err(), "{bad:?} accepted");
    }
    for good in [
        "infra0=http://10.0.1.10:2380",
        "infra0=http://10.0.1.10:2380,infra0=https://[::1]:2380",
        "m-1.example=https://m-1.example.com:2380",
    ] {
        assert_eq!(check_member_value(good), Ok(()), "{good:?}");
    }
    let long = format!("a=http://{}:1", "h".repeat(MAX_VALUE_LEN));
    assert!(check_member_value(&long).is_err());
}

#[test]
fn member_ids_are_etcd_hex() {
    assert!(is_member_id("8e9e05c52164694d"));
    assert!(is_member_id("1"));
    assert!(!is_member_id("08e9e05c52164694"));
    assert!(!is_member_id("8E9E05C52164694D"));
    assert!(!is_member_id("8e9e05c52164694d0"));
    assert!(!is_member_id("_config"));
}

#[test]
fn get_answers_as_etcd_does() {
    let mut r = with_token(3);
    register(&mut r, "b", "m1=http://127.0.0.1:2380").unwrap();
    register(&mut r, "a", "m2=http://127.0.0.1:2381").unwrap();
    assert_eq!(r.index, 13);
    let reply = r.get(TOK, &Key::Size, false, 1000);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.etcd_index, Some(13));
    assert_eq!(
        reply.body,
        format!("{{\"action\":\"get\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}/_config/size\",\"value\":\"3\",\"modifiedIndex\":11,\"createdIndex\":11}}}}\n")
    );
    let reply = r.get(TOK, &Key::Dir, false, 1000);
    assert_eq!(
        reply.body,
        [
            format!("{{\"action\":\"get\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}\",\"dir\":true,\"nodes\":["),
            format!("{{\"key\":\"/_etcd/registry/{TOK}/b\",\"value\":\"m1=http://127.0.0.1:2380\",\"modifiedIndex\":12,\"createdIndex\":12}},"),
            format!("{{\"key\":\"/_etcd/registry/{TOK}/a\",\"value\":\"m2=http://127.0.0.1:2381\",\"modifiedIndex\":13,\"createdIndex\":13}}],"),
            "\"modifiedIndex\":11,\"createdIndex\":11}}\n".to_string(),
        ]
        .concat()
    );
    let sorted = r.get(TOK, &Key::Dir, true, 1000).body;
    assert!(sorted.find("/a\"").unwrap() < sorted.find("/b\"").unwrap());
    // An empty directory has no "nodes" (Go's omitempty).
    let empty = with_token(3).get(TOK, &Key::Dir, false, 1000).body;
    assert!(!empty.contains("nodes"), "{empty}");
    let missing = r.get(TOK, &Key::Member("c".into()), false, 1000);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        format!("{{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/_etcd/registry/{TOK}/c\",\"index\":13}}\n")
    );
    let unknown = r.get("ffffffffffffffffffffffffffffffff", &Key::Size, false, 1000);
    assert!(unknown
        .body
        .contains("\"cause\":\"/_etcd/registry/ffffffffffffffffffffffffffffffff\""));
}

#[test]
fn values_are_escaped_as_go_does() {
    let mut r = with_token(3);
    // `&` is legal in a URL's user info; Go's encoder writes it as \u0026.
    register(&mut r, "b", "m1=http://a&b@h:1").unwrap();
    assert!(r
        .get(TOK, &Key::Dir, false, 1000)
        .body
        .contains("a\\u0026b@h:1"));
}

#[test]
fn duplicates_and_full_tokens() {
    let mut r = with_token(2);
    let created = register(&mut r, "a1", "m1=http://127.0.0.1:1").unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.etcd_index, Some(12));
    assert!(created
        .body
        .starts_with("{\"action\":\"create\",\"node\":{"));
    let dup = register(&mut r, "a1", "m9=http://127.0.0.1:9").unwrap_err();
    assert_eq!(
        (dup.code, dup.kind),
        (ErrorCode::NodeExist, RefusalKind::Duplicate)
    );
    assert_eq!(dup.reply().status, 412);
    assert_eq!(
        dup.reply().body,
        format!("{{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/_etcd/registry/{TOK}/a1\",\"index\":12}}\n")
    );
    let dup_name = register(&mut r, "a2", "m1=http://127.0.0.1:2").unwrap_err();
    assert_eq!(dup_name.code, ErrorCode::NodeExist);
    assert!(dup_name.cause.contains("member name \"m1\""));
    // Past the size: accepted, etcd decides it is full.
    for (i, id) in ["a2", "a3", "a4", "a5"].iter().enumerate() {
        register(&mut r, id, &format!("n{i}=http://127.0.0.1:{}", 10 + i)).unwrap();
    }
    let full = register(&mut r, "a6", "n9=http://127.0.0.1:99").unwrap_err();
    assert_eq!(
        (full.code, full.kind),
        (ErrorCode::NoMorePeer, RefusalKind::Full)
    );
    // Nothing changed on refusals.
    assert_eq!(r.index, 16);
}

#[test]
fn waits_find_the_first_event_at_or_after_since() {
    let mut r = with_token(3);
    register(&mut r, "a", "m1=http://127.0.0.1:1").unwrap(); // 12
    register(&mut r, "b", "m2=http://127.0.0.1:2").unwrap(); // 13
    let ev = |key: Key, rec: bool, since: u64| r.first_event(TOK, &key, rec, since, 1000);
    assert!(ev(Key::Dir, true, 13).unwrap().contains("/b\""));
    assert!(ev(Key::Dir, true, 12).unwrap().contains("/a\""));
    assert_eq!(ev(Key::Dir, true, 14), None);
    // The hidden size key is not reported to recursive waits on the directory.
    assert!(ev(Key::Dir, true, 1).unwrap().contains("/a\""));
    assert_eq!(ev(Key::Dir, false, 1), None);
    // What createSelf's wait on its own key gets: the create at its index.
    assert_eq!(
        ev(Key::Member("b".into()), false, 13).unwrap(),
        format!("{{\"action\":\"create\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}/b\",\"value\":\"m2=http://127.0.0.1:2\",\"modifiedIndex\":13,\"createdIndex\":13}}}}\n")
    );
    assert!(ev(Key::Size, false, 11)
        .unwrap()
        .starts_with("{\"action\":\"set\""));
    assert!(ev(Key::ConfigDir, true, 11).is_some());
    assert_eq!(ev(Key::Size, false, 12), None);
}

#[test]
fn tokens_expire_and_are_limited() {
    let mut r = with_token(3);
    assert!(r.live(TOK, 4599).is_some());
    assert!(r.live(TOK, 4600).is_none());
    assert_eq!(r.get(TOK, &Key::Dir, false, 4600).status, 404);
    assert_eq!(r.plan_expiry(4599), None);
    let c = r.plan_expiry(4600).unwrap();
    r.apply(&c);
    assert_eq!(r.index, 12);
    assert!(r.tokens.is_empty());
    for i in 0..4 {
        let c = r
            .plan_token(&format!("{TOK}{i}"), 3, 5000, 10, &LIMITS)
            .unwrap();
        r.apply(&c);
    }
    let e = r
        .plan_token(&format!("{TOK}x"), 3, 5000, 10, &LIMITS)
        .unwrap_err();
    assert_eq!(e.reply().status, 503);
    // Expired tokens do not count against the limit.
    assert!(r
        .plan_token(&format!("{TOK}x"), 3, 5010, 10, &LIMITS)
        .is_ok());
    let e = r
        .plan_token(&format!("{TOK}0"), 3, 5000, 10, &LIMITS)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NodeExist);
}

#[test]
fn delete_answers_like_etcd() {
    let mut r = with_token(3);
    let c = r.plan_delete(TOK, 1000).unwrap();
    r.apply(&c);
    assert_eq!(
        r.change_reply(&c).body,
        format!("{{\"action\":\"delete\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}\",\"dir\":true,\"modifiedIndex\":12,\"createdIndex\":11}},\"prevNode\":{{\"key\":\"/_etcd/registry/{TOK}\",\"dir\":true,\"modifiedIndex\":11,\"createdIndex\":11}}}}\n")
    );
    assert_eq!(
        r.plan_delete(TOK, 1000).unwrap_err().code,
        ErrorCode::KeyNotFound
    );
    let path = format!("/{TOK}");
    let mut q = req("DELETE", &path, None, b"");
    q.admin = false;
    assert_eq!(parse(&q, &LIMITS, 0).unwrap_err().status, 401);
    let e = parse(
        &req("DELETE", &format!("/{TOK}/abc"), None, b""),
        &LIMITS,
        0,
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
}

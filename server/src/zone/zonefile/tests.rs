use super::*;
use crate::proto::types::Rclass;
use crate::proto::types::Rtype;

fn origin() -> Name {
    Name::parse("example.test.", None).unwrap()
}

fn parse(text: &str) -> Result<Vec<Record>, ZoneFileErrors> {
    parse_str(text, Path::new("t/x.zone"), &origin())
}

const HEAD: &str = "$TTL 30\n@ 300 IN SOA ns1 hostmaster ( 1 ; serial\n 3600 600 86400 60 )\n";

#[test]
fn parses_records_and_directives() {
    let rs = parse(&format!(
        "{HEAD}@ NS ns1\nns1 IN 60 A 127.0.0.1\n  AAAA ::1\n_etcd-server-ssl._tcp SRV 0 0 2380 infra0\n\
         txt TXT \"a \\\"b\\\"\" c\n$ORIGIN sub.example.test.\nx 1h IN A 10.0.0.1\ncaa CAA 0 issue \"ca.example\"\n\
         u TYPE65534 \\# 4 0a000001\nh HINFO \"cpu\" os\n"
    ))
    .unwrap();
    assert_eq!(rs.len(), 10);
    assert_eq!(rs[0].ttl, 300);
    assert_eq!(rs[2].owner.to_string(), "ns1.example.test.");
    assert_eq!(rs[2].ttl, 60);
    assert_eq!(rs[3].owner.to_string(), "ns1.example.test.");
    assert_eq!(rs[3].rtype, Rtype::AAAA);
    assert_eq!(
        rdata_to_text(Rtype::SRV, &rs[4].rdata),
        "0 0 2380 infra0.example.test."
    );
    assert_eq!(
        rdata_to_text(Rtype::TXT, &rs[5].rdata),
        "\"a \\\"b\\\"\" \"c\""
    );
    assert_eq!(rs[6].owner.to_string(), "x.sub.example.test.");
    assert_eq!(rs[6].ttl, 3600);
    assert_eq!(rs[8].rtype, Rtype(65534));
    assert_eq!(rs[8].rdata, vec![10, 0, 0, 1]);
    assert_eq!(rs[1].source.as_ref().unwrap().line, 4);
}

fn first_error(text: &str) -> String {
    parse(text).unwrap_err().0[0].to_string()
}

#[test]
fn errors_name_file_line_and_record() {
    let e = first_error(&format!("{HEAD}infra2 A 10.0.0.300\n"));
    assert_eq!(
        e,
        "t/x.zone:4: bad A record: invalid IPv4 address \"10.0.0.300\" in \"infra2 A 10.0.0.300\""
    );
    let e = first_error(&format!("{HEAD}s SRV 0 0 2380\n"));
    assert!(
        e.contains("needs 4 fields (priority weight port target), found 3"),
        "{e}"
    );
    let e = first_error(&format!("{HEAD}s SRV 0 0 99999 t\n"));
    assert!(e.contains("SRV port 99999 out of range 0-65535"), "{e}");
    let e = first_error(&format!("{HEAD}www 3600 IN\n"));
    assert!(e.contains("has no type"), "{e}");
    let e = first_error(&format!("{HEAD}www SRVV 1\n"));
    assert!(e.contains("unknown record type \"SRVV\""), "{e}");
    let e = first_error(&format!("{HEAD}x CH TXT a\n"));
    assert!(e.contains("class CH"), "{e}");
    let e = first_error("a A 1.2.3.4\n");
    assert!(e.contains("no TTL"), "{e}");
    let e = first_error("$GENERATE 1-3 a$ A 1.2.3.$\n");
    assert!(e.contains("not supported"), "{e}");
    // Record data past the 65535 octets a record holds: refused with the line.
    let chunk = format!(" \"{}\"", "a".repeat(250));
    let e = first_error(&format!("{HEAD}big TXT{}\n", chunk.repeat(270)));
    assert!(
        e.starts_with("t/x.zone:4:") && e.contains("at most 65535"),
        "{e}"
    );
    let e = first_error(&format!("{HEAD}big TYPE65534 \\# 70000 00\n"));
    assert!(e.contains("more than the 65535 octets"), "{e}");
    let e = first_error(&format!("{HEAD}a TXT \"open\n"));
    assert!(e.contains("not closed"), "{e}");
    let e = first_error(&format!("{HEAD}a A \\# 3 0a0000\n"));
    assert!(e.contains("not valid A rdata"), "{e}");
    // Several errors are all reported.
    let errs = parse(&format!("{HEAD}a A x\nb AAAA y\n")).unwrap_err();
    assert_eq!(errs.0.len(), 2);
}

/// Issue 8: hex after `\#` that is not ASCII used to panic (a byte slice through a
/// character), taking `musterd check` and a reloading server down.
#[test]
fn issue8_non_ascii_hex_is_an_error() {
    for (data, want) in [
        ("2 aéb", "odd number of digits"),
        ("2 aé", "\"aé\" is not hex"),
        ("1 é0", "\"é0\" is not hex"),
        ("2 00😀", "odd number of digits"),
    ] {
        let e = first_error(&format!("{HEAD}x TYPE65534 \\# {data}\n"));
        assert!(e.starts_with("t/x.zone:4: bad TYPE65534 record:"), "{e}");
        assert!(e.contains(want), "{data}: {e}");
    }
    let e = first_error(&format!("{HEAD}x SSHFP 1 1 aé\n"));
    assert!(e.contains("\"aé\" is not hex"), "{e}");
    let e = first_error(&format!("{HEAD}x DHCID AAIBé\n"));
    assert!(e.contains("'é' is not base64"), "{e}");
}

/// Issue 8: a known type in the RFC 3597 form gets the checks of its text form, so no
/// record a resolver cannot parse is served.
#[test]
fn issue8_generic_form_of_known_types_is_validated() {
    let bad = [
        ("MX", "4 00010301", "exchange name"),
        ("MX", "1 00", "preference"),
        ("NS", "2 0161", "target name"),
        ("CNAME", "3 c00c00", "target name"),
        ("PTR", "0", "target name is missing"),
        ("TXT", "3 05abcd", "says 5 octets"),
        ("TXT", "0", "at least one"),
        ("HINFO", "2 0161", "HINFO OS is missing"),
        ("CAA", "2 ffff", "CAA tag"),
        ("CAA", "3 000000", "CAA tag"),
        ("CAA", "4 00012061", "letters and digits"),
        ("SRV", "6 000000000000", "SRV target is missing"),
        ("SRV", "10 00000000000001610000", "follow"),
        ("SOA", "2 0000", "SOA serial"),
        ("A", "3 0a0000", "IPv4 address"),
        ("AAAA", "4 0a000001", "IPv6 address"),
        ("DS", "3 000102", "digest type"),
        ("DS", "4 00010203", "digest is missing"),
        ("DNSKEY", "3 010003", "algorithm"),
        (
            "RRSIG",
            "18 000100000000000000000000000000000000",
            "signer name",
        ),
        ("NSEC", "4 01610002", "type bitmap"),
        ("NSEC", "5 0161000100", "window 1 has length 0"),
        ("NSEC", "6 016100000100", "ends with a zero octet"),
        ("NSEC3", "5 0100000000", "next hashed owner name is missing"),
        ("DHCID", "2 0001", "digest type"),
        ("TYPE35", "5 0001000203", "NAPTR"),
        (
            "TYPE35",
            "9 000a00140121000000",
            "NAPTR flags \"!\" must be letters",
        ),
        ("TYPE64", "2 0001", "target name is missing"),
        ("TYPE64", "7 00010000010000", "SvcParam"),
        ("TYPE257", "1 00", "CAA tag is missing"),
    ];
    for (t, data, want) in bad {
        let e = first_error(&format!("{HEAD}a {t} \\# {data}\n"));
        let name = Rtype::from_text(t).unwrap().to_string();
        assert!(
            e.starts_with(&format!(
                "t/x.zone:4: bad {name} record: the \\# data is not valid {name} rdata:"
            )) && e.contains(want)
                && e.ends_with(&format!("in \"a {t} \\# {data}\"")),
            "{t} {data}: {e}"
        );
    }
    // The generic form of well-formed data still parses, to the same rdata as text.
    let good = [
        ("MX", "5 000a016100", "MX 10 a."),
        ("TXT", "4 01610162", "TXT a b"),
        ("HINFO", "4 01610162", "HINFO a b"),
        ("CAA", "8 0005697373756561", "CAA 0 issue a"),
        ("SRV", "9 000100020003016100", "SRV 1 2 3 a."),
        ("A", "4 0a000001", "A 10.0.0.1"),
    ];
    for (t, data, text) in good {
        let rs = parse(&format!("{HEAD}a {t} \\# {data}\na {text}\n")).unwrap();
        assert_eq!(rs[1].rdata, rs[2].rdata, "{t} {data}");
    }
    let rs = parse(&format!(
        "{HEAD}a DS \\# 5 0001020300\na TYPE47 \\# 7 01610000020040\n"
    ))
    .unwrap();
    assert_eq!(rs.len(), 3);
}

#[test]
fn includes_are_confined() {
    let dir = std::env::temp_dir().join(format!("zf-{}", std::process::id()));
    let zdir = dir.join("zones");
    std::fs::create_dir_all(&zdir).unwrap();
    std::fs::write(zdir.join("inc.zone"), "inc A 10.0.0.1\n").unwrap();
    std::fs::write(dir.join("secret"), "s A 10.0.0.2\n").unwrap();
    std::fs::write(zdir.join("loop.zone"), "$INCLUDE loop.zone\n").unwrap();
    let _ = std::os::unix::fs::symlink(dir.join("secret"), zdir.join("link.zone"));
    let main = zdir.join("main.zone");
    let ok = format!("{HEAD}$INCLUDE inc.zone\n");
    let rs = parse_str(&ok, &main, &origin()).unwrap();
    assert_eq!(rs.last().unwrap().owner.to_string(), "inc.example.test.");
    assert_eq!(
        rs.last()
            .unwrap()
            .source
            .as_ref()
            .unwrap()
            .file
            .file_name()
            .unwrap(),
        "inc.zone"
    );
    for bad in ["../secret", "link.zone", "/etc/passwd"] {
        let e = parse_str(&format!("{HEAD}$INCLUDE {bad}\n"), &main, &origin()).unwrap_err();
        assert!(e.to_string().contains("include refused"), "{bad}: {e}");
    }
    let e = parse_str(&format!("{HEAD}$INCLUDE loop.zone\n"), &main, &origin()).unwrap_err();
    assert!(e.to_string().contains("nested more than"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_round_trip_through_text() {
    let tricky = Record {
        owner: Name::parse("t.example.test.", None).unwrap(),
        rtype: Rtype::TXT,
        class: Rclass::IN,
        ttl: 30,
        rdata: b"\x13a\n$INCLUDE x \"q\" \\;".to_vec(),
        source: None,
    };
    let rs = parse(&format!(
        "{HEAD}s SRV 1 2 3 t.example.org.\nu TYPE999 \\# 2 beef\nc CAA 128 iodef \"mailto:x\"\n"
    ))
    .unwrap();
    for r in rs.iter().chain([&tricky]) {
        let line = format_record(r, Some(&origin()));
        let back = parse(&format!("{HEAD}{line}\n")).unwrap();
        let got = back.last().unwrap();
        assert_eq!(
            (got.rtype, &got.rdata, &got.owner),
            (r.rtype, &r.rdata, &r.owner),
            "{line}"
        );
    }
}

#[test]
fn random_input_never_panics() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let alphabet = b"abc019.;()\"\\ \t\n$@*#AINSRVTXT-_";
    for _ in 0..3000 {
        let len = (x % 120) as usize;
        let s: String = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize] as char
            })
            .collect();
        let _ = parse(&s);
    }
}

#[test]
fn ttl_units() {
    assert_eq!(parse_ttl("1h30m"), Some(5400));
    assert_eq!(parse_ttl("1W"), Some(604800));
    assert_eq!(parse_ttl("300"), Some(300));
    assert_eq!(parse_ttl("1h30"), None);
    assert_eq!(parse_ttl("x"), None);
    assert_eq!(parse_ttl("99999999999"), None);
}

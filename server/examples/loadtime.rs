//! Times building and precompiling a benchmark-sized zone (development aid).
use muster_server::answer::{AnswerConfig, Responder};
use muster_server::name::Name;
use muster_server::rr::{class, rtype, Record};
use muster_server::zone::Zone;
use std::time::Instant;

fn name(s: &str) -> Vec<u8> {
    Name::parse(s, None).unwrap().as_wire().to_vec()
}

fn main() {
    let rec = |o: &str, t: u16, rdata: Vec<u8>| Record {
        owner: Name::parse(o, None).unwrap(),
        rtype: t,
        class: class::IN,
        ttl: 30,
        rdata,
        source: None,
    };
    let mut soa = name("ns1.z.test.");
    soa.extend(name("h.z.test."));
    for n in [1u32, 3600, 600, 86400, 60] {
        soa.extend_from_slice(&n.to_be_bytes());
    }
    let mut rs = vec![
        rec("z.test.", rtype::SOA, soa),
        rec("z.test.", rtype::NS, name("ns1.z.test.")),
    ];
    for c in 0..10_000 {
        let members = if c % 4 == 0 { 5 } else { 3 };
        for owner in [
            "_etcd-server-ssl._tcp",
            "_etcd-server._tcp",
            "_etcd-client-ssl._tcp",
            "_etcd-client._tcp",
        ] {
            for m in 0..members {
                let mut v = vec![0, 0, 0, 0, 9, 0x4c];
                v.extend(name(&format!("m{m}.c{c}.z.test.")));
                rs.push(rec(&format!("{owner}.c{c}.z.test."), rtype::SRV, v));
            }
        }
        for m in 0..members {
            rs.push(rec(
                &format!("m{m}.c{c}.z.test."),
                rtype::A,
                vec![10, (c >> 8) as u8, c as u8, m],
            ));
            rs.push(rec(
                &format!("m{m}.c{c}.z.test."),
                rtype::AAAA,
                vec![0xfd; 16],
            ));
        }
    }
    println!("{} records", rs.len());
    let t = Instant::now();
    let (zone, _) = Zone::build(&Name::parse("z.test.", None).unwrap(), rs).unwrap();
    println!("build {:?}", t.elapsed());
    unsafe { libc::malloc_trim(0) };
    println!("rss after build {} MB", rss());
    let t = Instant::now();
    let r = Responder::new(AnswerConfig::default());
    let zone = std::sync::Arc::new(zone);
    muster_server::fastpath::precompile(&zone, &r, &[]);
    println!("precompile {:?} ({} names)", t.elapsed(), zone.name_count());
    unsafe { libc::malloc_trim(0) };
    println!("rss after precompile {} MB", rss());
}

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096 / 1_000_000
}

//! `muster-agent doctor` on the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ValueEnum;

use crate::cluster::records;
use crate::doctor::replay::Version;
use crate::doctor::DoctorConfig;
use crate::urls::EtcdUrl;

/// `muster-agent doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Discovery domain, as etcd's --discovery-srv (e.g. example.com).
    #[arg(long, env = "MUSTER_DOMAIN", value_name = "DOMAIN", value_parser = records::parse_domain)]
    pub domain: String,
    /// Service-name suffix, as etcd's --discovery-srv-name.
    #[arg(long, env = "MUSTER_SRV_NAME", value_name = "S", value_parser = records::parse_srv_name)]
    pub srv_name: Option<String>,
    /// DNS server to ask, IP or IP:PORT (repeatable). Default: /etc/resolv.conf's.
    #[arg(
        long,
        env = "MUSTER_NAMESERVER",
        value_name = "IP[:PORT]",
        value_delimiter = ',',
        value_parser = crate::discover::parse_nameserver
    )]
    pub nameserver: Vec<SocketAddr>,
    /// Which etcd to replay: 3.4, 3.5 (and later) or both. Only the chosen ones decide
    /// the exit status.
    #[arg(long, value_enum, default_value = "both")]
    pub etcd_version: VersionArg,
    /// How the host NAME sets --initial-advertise-peer-urls, if not by the name URL of
    /// its SRV record (repeatable; several for one NAME are several URLs).
    #[arg(long, value_name = "NAME=URL", value_parser = parse_advertise)]
    pub advertise: Vec<(String, EtcdUrl)>,
    /// The members' --initial-cluster-token (etcd's default: etcd-cluster); only the
    /// printed member and cluster IDs depend on it.
    #[arg(long, value_name = "TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// A member's peer certificate (PEM) to check for the SANs etcd needs: FILE for
    /// every member, NAME=FILE for one (repeatable).
    #[arg(long, value_name = "[NAME=]FILE", value_parser = parse_cert_arg)]
    pub peer_cert: Vec<(Option<String>, PathBuf)>,
    /// The members run with --peer-trusted-ca-file (then per-host SANs suffice; without
    /// it etcd checks peers against the bare domain).
    #[arg(long, value_name = "FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DoctorFormat,
}

/// `--etcd-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionArg {
    /// etcd 3.4.
    #[value(name = "3.4")]
    V3_4,
    /// etcd 3.5 and later.
    #[value(name = "3.5")]
    V3_5,
    /// Both.
    Both,
}

impl VersionArg {
    fn versions(self) -> Vec<Version> {
        match self {
            VersionArg::V3_4 => vec![Version::V3_4],
            VersionArg::V3_5 => vec![Version::V3_5],
            VersionArg::Both => vec![Version::V3_4, Version::V3_5],
        }
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    /// For people.
    Text,
    /// The whole report as JSON.
    Json,
}

fn parse_advertise(s: &str) -> Result<(String, EtcdUrl), String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=URL, e.g. m1=https://10.0.0.1:2380"))?;
    let name = crate::cluster::MemberName::parse(name.trim())?;
    Ok((name.as_str().to_string(), url.parse()?))
}

fn parse_cert_arg(s: &str) -> Result<(Option<String>, PathBuf), String> {
    if s.trim().is_empty() {
        return Err("the path is empty".into());
    }
    // NAME=FILE only when the part before '=' can be a member name; a path may hold '='.
    match s.split_once('=') {
        Some((n, f)) if crate::cluster::MemberName::parse(n).is_ok() && !f.is_empty() => {
            Ok((Some(n.to_ascii_lowercase()), PathBuf::from(f)))
        }
        _ => Ok((None, PathBuf::from(s))),
    }
}

impl DoctorArgs {
    /// The checked configuration.
    pub fn config(self) -> DoctorConfig {
        DoctorConfig {
            domain: self.domain,
            srv_name: self.srv_name,
            nameserver: self.nameserver,
            versions: self.etcd_version.versions(),
            advertise: self.advertise,
            initial_cluster_token: self.initial_cluster_token,
            peer_cert: self.peer_cert,
            peer_trusted_ca: self.peer_trusted_ca_file.is_some(),
            json: self.format == DoctorFormat::Json,
        }
    }
}

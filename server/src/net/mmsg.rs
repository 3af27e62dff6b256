//! Batched UDP with `recvmmsg(2)` and `sendmmsg(2)`: one system call moves a whole batch of
//! datagrams, which is most of what makes the UDP path cheap (see
//! [`crate::net::listen::udp_worker`]).
//!
//! All the unsafe code of the UDP path is here, behind an API of slices and `Vec`s. The
//! kernel's header arrays (`mmsghdr`, `iovec`) point into the batch's own buffers and are
//! rebuilt from them right before each call — including after a caller rewrote a reply
//! the kernel refused — so they never point at memory that moved or was freed.
//!
//! Limitations: Linux only (the calls are Linux's); one buffer per datagram (no
//! scatter/gather), no ancillary data (so no per-packet destination address for sockets
//! bound to a wildcard address with several interfaces).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Receive and reply buffers for one batch, owned by one UDP worker.
pub struct Batch {
    /// Most datagrams per call.
    size: usize,
    /// Longest datagram accepted; longer ones are marked truncated.
    datagram_max: usize,
    /// `size` receive buffers of `datagram_max` octets each, back to back.
    inbuf: Vec<u8>,
    /// Source address of each received datagram (and destination of its reply).
    addrs: Vec<libc::sockaddr_storage>,
    in_iov: Vec<libc::iovec>,
    in_hdr: Vec<libc::mmsghdr>,
    /// Datagrams in the buffers from the last [`Batch::recv`].
    received: usize,
    /// One reply buffer per datagram; the first `reply_to.len()` hold replies.
    replies: Vec<Vec<u8>>,
    /// For each reply, the index of the datagram it answers.
    reply_to: Vec<usize>,
    out_iov: Vec<libc::iovec>,
    out_hdr: Vec<libc::mmsghdr>,
}

/// One received datagram.
pub struct Datagram<'a> {
    bytes: &'a [u8],
    truncated: bool,
    addr: &'a libc::sockaddr_storage,
}

impl Datagram<'_> {
    /// The datagram's payload (cut at the batch's maximum if [`Datagram::truncated`]).
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// True when the datagram was longer than the batch accepts (MSG_TRUNC).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Where it came from.
    pub fn peer(&self) -> SocketAddr {
        sockaddr_to_std(self.addr)
    }
}

impl Batch {
    /// Buffers for `size` datagrams of up to `datagram_max` octets, with replies that start
    /// at `reply_capacity` octets.
    pub fn new(size: usize, datagram_max: usize, reply_capacity: usize) -> Batch {
        let size = size.max(1);
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        let (addr, iov, hdr) = unsafe {
            (
                std::mem::zeroed::<libc::sockaddr_storage>(),
                std::mem::zeroed::<libc::iovec>(),
                std::mem::zeroed::<libc::mmsghdr>(),
            )
        };
        Batch {
            size,
            datagram_max,
            inbuf: vec![0; size * datagram_max],
            addrs: vec![addr; size],
            in_iov: vec![iov; size],
            in_hdr: vec![hdr; size],
            received: 0,
            replies: (0..size)
                .map(|_| Vec::with_capacity(reply_capacity))
                .collect(),
            reply_to: Vec::with_capacity(size),
            out_iov: vec![iov; size],
            out_hdr: vec![hdr; size],
        }
    }

    /// Receives up to a batch of datagrams, waiting (up to the socket's read timeout) for
    /// the first only. Forgets the previous batch and its replies.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.received = 0;
        self.reply_to.clear();
        for (i, chunk) in self.inbuf.chunks_exact_mut(self.datagram_max).enumerate() {
            self.in_iov[i] = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            let h = &mut self.in_hdr[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.in_iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: the `size` headers were just pointed at live buffers of the stated sizes
        // (receive buffers, address storage, one iovec each), all owned by `self`, which
        // is borrowed mutably for the whole call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.in_hdr.as_mut_ptr(),
                self.size as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagrams received by the last [`Batch::recv`].
    pub fn len(&self) -> usize {
        self.received
    }

    /// True when the last receive returned nothing.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Calls `answer` with each received datagram and an empty-or-stale reply buffer; a
    /// datagram whose `answer` returns true gets that buffer sent back by [`Batch::send`].
    pub fn answer(&mut self, mut answer: impl FnMut(Datagram<'_>, &mut Vec<u8>) -> bool) {
        self.reply_to.clear();
        for i in 0..self.received {
            let hdr = &self.in_hdr[i];
            let start = i * self.datagram_max;
            let len = (hdr.msg_len as usize).min(self.datagram_max);
            let datagram = Datagram {
                bytes: &self.inbuf[start..start + len],
                truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                addr: &self.addrs[i],
            };
            let out = &mut self.replies[self.reply_to.len()];
            if answer(datagram, out) {
                self.reply_to.push(i);
            }
        }
    }

    /// Points reply header `k` at reply buffer `k` as it is now, and at its datagram's
    /// source address.
    fn aim(&mut self, k: usize) {
        let i = self.reply_to[k];
        let reply = &mut self.replies[k];
        self.out_iov[k] = libc::iovec {
            iov_base: reply.as_mut_ptr().cast(),
            iov_len: reply.len(),
        };
        let h = &mut self.out_hdr[k].msg_hdr;
        h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = self.in_hdr[i].msg_hdr.msg_namelen;
        h.msg_iov = &mut self.out_iov[k];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
    }

    /// Sends every reply to the source of the datagram it answers; returns how many went
    /// out. When the kernel refuses one (e.g. EMSGSIZE), `refused` may rewrite that reply
    /// in place and return true to have it sent again — once: a reply refused twice, or
    /// one `refused` leaves alone, is skipped.
    pub fn send(
        &mut self,
        sock: &UdpSocket,
        mut refused: impl FnMut(&mut Vec<u8>, &io::Error) -> bool,
    ) -> usize {
        let replies = self.reply_to.len();
        for k in 0..replies {
            self.aim(k);
        }
        let mut sent = 0;
        let mut delivered = 0;
        let mut rewritten = None;
        while sent < replies {
            // SAFETY: headers [sent, replies) were aimed (by `aim`, after any rewrite of
            // their buffer) at reply buffers and source addresses owned by `self`, which is
            // borrowed mutably for the whole call.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.out_hdr[sent..].as_mut_ptr(),
                    (replies - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                delivered += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if rewritten != Some(sent) && refused(&mut self.replies[sent], &e) {
                // The rewrite may have moved the buffer: aim at it anew.
                self.aim(sent);
                rewritten = Some(sent);
                continue;
            }
            sent += 1;
        }
        delivered
    }
}

/// Converts a kernel socket address to std's form.
fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> SocketAddr {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which is smaller
            // and no more aligned than sockaddr_storage.
            let a: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
        }
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        (server, client)
    }

    /// Receives until `want` datagrams are in the batch (loopback delivers at once, but a
    /// receive may still return early).
    fn recv_all(batch: &mut Batch, server: &UdpSocket, want: usize) -> Vec<(Vec<u8>, bool)> {
        let mut got = Vec::new();
        while got.len() < want {
            batch.recv(server).unwrap();
            batch.answer(|d, _| {
                got.push((d.bytes().to_vec(), d.truncated()));
                false
            });
        }
        got
    }

    #[test]
    fn receives_a_batch_and_replies_to_each_source() {
        let (server, client) = pair();
        for m in [&b"one"[..], b"two", b"three"] {
            client.send(m).unwrap();
        }
        let mut batch = Batch::new(8, 64, 64);
        let mut seen = 0;
        while seen < 3 {
            let n = batch.recv(&server).unwrap();
            assert!(n >= 1 && n <= 3 - seen);
            batch.answer(|d, out| {
                assert_eq!(d.peer(), client.local_addr().unwrap());
                out.clear();
                out.extend(d.bytes().iter().map(u8::to_ascii_uppercase));
                // Leave "two" unanswered.
                d.bytes() != b"two"
            });
            seen += n;
            batch.send(&server, |_, e| panic!("send refused: {e}"));
        }
        let mut buf = [0u8; 64];
        for want in [&b"ONE"[..], b"THREE"] {
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn longer_datagrams_are_marked_truncated() {
        let (server, client) = pair();
        client.send(&[7; 32]).unwrap();
        client.send(&[8; 16]).unwrap();
        let mut batch = Batch::new(4, 16, 16);
        let got = recv_all(&mut batch, &server, 2);
        assert_eq!(got, vec![(vec![7; 16], true), (vec![8; 16], false)]);
    }

    /// Review issue 8: after a refused reply was rewritten, only its length was updated;
    /// a rewrite that moves the buffer must be sent from where the bytes are now.
    #[test]
    fn a_refused_reply_is_sent_again_from_its_new_buffer() {
        let (server, client) = pair();
        for m in [&b"a"[..], b"b", b"c"] {
            client.send(m).unwrap();
        }
        let mut batch = Batch::new(4, 64, 16);
        let mut seen = 0;
        let mut refusals = 0;
        while seen < 3 {
            seen += batch.recv(&server).unwrap();
            batch.answer(|d, out| {
                out.clear();
                if d.bytes() == b"b" {
                    // More than a UDP datagram can carry: the kernel says EMSGSIZE.
                    out.resize(70_000, b'x');
                } else {
                    out.extend_from_slice(d.bytes());
                }
                true
            });
            batch.send(&server, |reply, e| {
                assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
                refusals += 1;
                // A new, small allocation; the old one is freed.
                *reply = b"b, rewritten".to_vec();
                true
            });
        }
        assert_eq!(refusals, 1);
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = client.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [&b"a"[..], b"b, rewritten", b"c"]);
    }

    #[test]
    fn a_reply_refused_twice_is_skipped() {
        let (server, client) = pair();
        client.send(b"big").unwrap();
        client.send(b"small").unwrap();
        let mut batch = Batch::new(4, 64, 16);
        let mut seen = 0;
        let mut calls = 0;
        let mut sent = 0;
        while seen < 2 {
            seen += batch.recv(&server).unwrap();
            batch.answer(|d, out| {
                out.clear();
                out.extend_from_slice(d.bytes());
                if d.bytes() == b"big" {
                    out.resize(70_000, 0);
                }
                true
            });
            sent += batch.send(&server, |reply, _| {
                calls += 1;
                reply.resize(80_000, 0); // still too big
                true
            });
        }
        assert_eq!((calls, sent), (1, 1));
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"small");
    }
}

//! The messages between the agent and a shim, over the shim's control socket.
//!
//! A frame is a little-endian `u32` length and that many bytes: the protocol version, a tag
//! byte, then the fields in order — integers little-endian, byte strings as a `u32` length and their bytes. Arguments,
//! variables and paths are byte strings because Unix allows any byte but NUL in them. Both sides
//! are in this file, so they cannot drift apart; a frame that does not parse is a protocol error
//! and ends the connection.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// No message comes near this; a larger length means a confused or hostile peer.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How a service's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Its status could not be collected.
    Lost,
}

/// What to run and where to write; sent with every start, so a restart picks up changed
/// variables (an env file edited since).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spec {
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
    /// Added to the environment the shim inherited from the agent.
    pub env: Vec<(OsString, OsString)>,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// After the main process ends, what is left of its group gets SIGTERM and, this much later,
    /// SIGKILL.
    pub stop_timeout_ms: u64,
}

/// From the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToShim {
    /// Start the service (again). Answered by `Running` or `SpawnFailed`.
    Spawn(Spec),
    /// Send `signal` to the service's group, SIGKILL after `timeout_ms`. Answered by `Exited`.
    Stop { signal: i32, timeout_ms: u64 },
    /// Exit once the service has ended (the agent has recorded how).
    Quit,
    /// A new agent asks what runs. Answered by `Running` or `Idle`, or by `Exited` once a
    /// service that is ending has ended.
    Hello,
}

/// From the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromShim {
    /// The service runs: its pid (also its group id) and start mark (`homeport-platform`).
    Running {
        pid: u32,
        started: u64,
    },
    SpawnFailed(String),
    /// The service's main process ended, what was left of its group is gone, its output is in
    /// the log.
    Exited(Exit),
    /// Nothing runs; how the last run ended, if there was one.
    Idle(Option<Exit>),
}

/// The version of this protocol; both ends must speak the same one. An agent and a shim of
/// different Homeport versions meet after an upgrade replaced the binaries under a running agent.
pub const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed message on a log holder's control socket: {0}")]
    Malformed(&'static str),
    #[error(
        "the agent and the log holder (homeport-shim) are of different Homeport versions \
         (protocol {got}, expected {VERSION}); restart the agent"
    )]
    Version { got: u8 },
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8) -> Self {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0; 4]);
        v.push(VERSION);
        v.push(tag);
        Writer(v)
    }
    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn i32(&mut self, n: i32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn exit(&mut self, e: Option<Exit>) {
        match e {
            None => self.0.push(0),
            Some(Exit::Code(c)) => {
                self.0.push(1);
                self.i32(c);
            }
            Some(Exit::Signal(s)) => {
                self.0.push(2);
                self.i32(s);
            }
            Some(Exit::Lost) => self.0.push(3),
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

struct Reader<'a>(&'a [u8]);

const SHORT: ProtocolError = ProtocolError::Malformed("truncated");

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtocolError> {
        if self.0.len() < n {
            return Err(SHORT);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Ok(hi << 32 | lo)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, ProtocolError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn os(&mut self) -> Result<OsString, ProtocolError> {
        Ok(OsString::from_vec(self.bytes()?))
    }
    fn exit(&mut self) -> Result<Option<Exit>, ProtocolError> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(Exit::Code(self.i32()?)),
            2 => Some(Exit::Signal(self.i32()?)),
            3 => Some(Exit::Lost),
            _ => return Err(ProtocolError::Malformed("unknown exit kind")),
        })
    }
    /// The version byte and the tag.
    fn tag(&mut self) -> Result<u8, ProtocolError> {
        let version = self.u8()?;
        if version != VERSION {
            return Err(ProtocolError::Version { got: version });
        }
        self.u8()
    }
    fn done(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed("trailing bytes"))
        }
    }
}

const SPAWN: u8 = 1;
const STOP: u8 = 2;
const QUIT: u8 = 3;
const HELLO: u8 = 4;
const RUNNING: u8 = 10;
const SPAWN_FAILED: u8 = 11;
const EXITED: u8 = 12;
const IDLE: u8 = 13;

impl ToShim {
    /// The whole frame, length included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToShim::Spawn(s) => {
                let mut w = Writer::new(SPAWN);
                w.u32(s.argv.len() as u32);
                for a in &s.argv {
                    w.bytes(a.as_bytes());
                }
                w.bytes(s.cwd.as_os_str().as_bytes());
                w.u32(s.env.len() as u32);
                for (k, v) in &s.env {
                    w.bytes(k.as_bytes());
                    w.bytes(v.as_bytes());
                }
                w.bytes(s.log_path.as_os_str().as_bytes());
                w.u64(s.log_max_bytes);
                w.u32(s.log_keep);
                w.u64(s.stop_timeout_ms);
                w.finish()
            }
            ToShim::Stop { signal, timeout_ms } => {
                let mut w = Writer::new(STOP);
                w.i32(*signal);
                w.u64(*timeout_ms);
                w.finish()
            }
            ToShim::Quit => Writer::new(QUIT).finish(),
            ToShim::Hello => Writer::new(HELLO).finish(),
        }
    }

    /// Parses one frame's body (without its length).
    pub fn decode(body: &[u8]) -> Result<ToShim, ProtocolError> {
        let mut r = Reader(body);
        let msg = match r.tag()? {
            SPAWN => {
                let argc = r.u32()? as usize;
                let mut argv = Vec::with_capacity(argc.min(4096));
                for _ in 0..argc {
                    argv.push(r.os()?);
                }
                let cwd = PathBuf::from(r.os()?);
                let envc = r.u32()? as usize;
                let mut env = Vec::with_capacity(envc.min(4096));
                for _ in 0..envc {
                    env.push((r.os()?, r.os()?));
                }
                ToShim::Spawn(Spec {
                    argv,
                    cwd,
                    env,
                    log_path: PathBuf::from(r.os()?),
                    log_max_bytes: r.u64()?,
                    log_keep: r.u32()?,
                    stop_timeout_ms: r.u64()?,
                })
            }
            STOP => ToShim::Stop {
                signal: r.i32()?,
                timeout_ms: r.u64()?,
            },
            QUIT => ToShim::Quit,
            HELLO => ToShim::Hello,
            _ => return Err(ProtocolError::Malformed("unknown message to the shim")),
        };
        r.done()?;
        Ok(msg)
    }
}

impl FromShim {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FromShim::Running { pid, started } => {
                let mut w = Writer::new(RUNNING);
                w.u32(*pid);
                w.u64(*started);
                w.finish()
            }
            FromShim::SpawnFailed(e) => {
                let mut w = Writer::new(SPAWN_FAILED);
                w.bytes(e.as_bytes());
                w.finish()
            }
            FromShim::Exited(e) => {
                let mut w = Writer::new(EXITED);
                w.exit(Some(*e));
                w.finish()
            }
            FromShim::Idle(e) => {
                let mut w = Writer::new(IDLE);
                w.exit(*e);
                w.finish()
            }
        }
    }

    pub fn decode(body: &[u8]) -> Result<FromShim, ProtocolError> {
        let mut r = Reader(body);
        let msg = match r.tag()? {
            RUNNING => FromShim::Running {
                pid: r.u32()?,
                started: r.u64()?,
            },
            SPAWN_FAILED => {
                FromShim::SpawnFailed(String::from_utf8_lossy(&r.bytes()?).into_owned())
            }
            EXITED => FromShim::Exited(
                r.exit()?
                    .ok_or(ProtocolError::Malformed("exit without a kind"))?,
            ),
            IDLE => FromShim::Idle(r.exit()?),
            _ => return Err(ProtocolError::Malformed("unknown message from the shim")),
        };
        r.done()?;
        Ok(msg)
    }
}

/// Collects bytes as they arrive and hands out complete frames' bodies.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's body, `Ok(None)` if it has not all arrived yet.
    pub fn next_body(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(ProtocolError::Malformed("frame too large"));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                OsString::from_vec(b"echo \xff\n".to_vec()),
            ],
            cwd: "/srv/app".into(),
            env: vec![("PORT".into(), "8080".into()), ("EMPTY".into(), "".into())],
            log_path: "/data/logs/a/p/web.log".into(),
            log_max_bytes: 10 << 20,
            log_keep: 5,
            stop_timeout_ms: 10_000,
        }
    }

    fn body(frame: &[u8]) -> &[u8] {
        &frame[4..]
    }

    #[test]
    fn every_message_survives_the_wire() {
        for m in [
            ToShim::Spawn(spec()),
            ToShim::Spawn(Spec::default()),
            ToShim::Stop {
                signal: 15,
                timeout_ms: 1 << 40,
            },
            ToShim::Quit,
            ToShim::Hello,
        ] {
            assert_eq!(ToShim::decode(body(&m.encode())), Ok(m));
        }
        for m in [
            FromShim::Running {
                pid: 4_000_000,
                started: u64::MAX,
            },
            FromShim::SpawnFailed("cannot run \"x\": No such file".into()),
            FromShim::Exited(Exit::Code(-1)),
            FromShim::Exited(Exit::Signal(9)),
            FromShim::Exited(Exit::Lost),
            FromShim::Idle(None),
            FromShim::Idle(Some(Exit::Code(0))),
        ] {
            assert_eq!(FromShim::decode(body(&m.encode())), Ok(m));
        }
    }

    #[test]
    fn frames_arrive_in_pieces_and_together() {
        let mut wire = ToShim::Spawn(spec()).encode();
        wire.extend(ToShim::Quit.encode());
        let mut frames = Frames::default();
        let mut got = Vec::new();
        for byte in wire {
            frames.push(&[byte]);
            while let Some(b) = frames.next_body().expect("well formed") {
                got.push(ToShim::decode(&b).expect("decodes"));
            }
        }
        assert_eq!(got, vec![ToShim::Spawn(spec()), ToShim::Quit]);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = ToShim::Spawn(spec()).encode();
        for cut in 0..good.len() - 4 {
            assert!(ToShim::decode(&good[4..4 + cut]).is_err(), "cut at {cut}");
        }
        let mut long = good[4..].to_vec();
        long.push(0);
        assert!(ToShim::decode(&long).is_err());
        assert!(FromShim::decode(&[VERSION, 99]).is_err());
        assert!(FromShim::decode(&[VERSION, EXITED, 9]).is_err());
        assert_eq!(
            FromShim::decode(&[VERSION + 1, EXITED, 1, 0, 0, 0, 0]),
            Err(ProtocolError::Version { got: VERSION + 1 })
        );
        // A huge count must not allocate before the bytes are there.
        assert!(ToShim::decode(&[VERSION, SPAWN, 255, 255, 255, 255]).is_err());
        let mut frames = Frames::default();
        frames.push(&u32::MAX.to_le_bytes());
        assert!(frames.next_body().is_err());
    }
}

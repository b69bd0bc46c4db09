//! A tiny blocking RESP2 client, enough to set servers up and look at what a test left in them.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status, bulk or integer); panics otherwise.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) => String::new(),
            other => panic!("not a text reply: {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("not an integer reply: {other:?}"),
        }
    }

    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v.clone(),
            Reply::Array(None) => Vec::new(),
            other => panic!("not an array reply: {other:?}"),
        }
    }

    /// The reply as `redis-cli` prints it when its output is not a terminal: a text reply as
    /// is, an array's items one a line (nested arrays flattened); None for an error.
    pub fn cli_text(&self) -> Option<String> {
        match self {
            Reply::Error(_) => None,
            Reply::Array(_) => {
                let lines: Option<Vec<String>> = self.items().iter().map(Reply::cli_text).collect();
                lines.map(|l| l.join("\n"))
            }
            other => Some(other.text()),
        }
    }
}

/// One connection speaking RESP2.
pub struct Redis {
    r: BufReader<TcpStream>,
}

impl Redis {
    pub fn connect(port: u16) -> Result<Redis> {
        let s = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connect to redis on port {port}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Redis {
            r: BufReader::new(s),
        })
    }

    /// Sends one command (binary-safe arguments) and reads its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.r.get_mut().write_all(&req)?;
        read_reply(&mut self.r)
    }

    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_bytes(&a)
    }
}

/// One command on a fresh connection.
pub fn command(port: u16, args: &[&str]) -> Result<Reply> {
    Redis::connect(port)?.cmd(args)
}

/// One command on a fresh connection, after `AUTH password` when one is given.
pub fn command_as(port: u16, password: Option<&str>, args: &[&str]) -> Result<Reply> {
    let mut c = Redis::connect(port)?;
    if let Some(pw) = password {
        match c.cmd(&["AUTH", pw])? {
            Reply::Status(_) => {}
            other => bail!("AUTH on port {port}: {other:?}"),
        }
    }
    c.cmd(args)
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("redis closed the connection");
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse()?),
        "$" => {
            let len: i64 = rest.parse()?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut body = vec![0u8; len as usize + 2];
                r.read_exact(&mut body)?;
                body.truncate(len as usize);
                Reply::Bulk(Some(body))
            }
        }
        "*" => {
            let len: i64 = rest.parse()?;
            if len < 0 {
                Reply::Array(None)
            } else {
                let mut v = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    v.push(read_reply(r)?);
                }
                Reply::Array(Some(v))
            }
        }
        _ => bail!("unexpected RESP line {line:?}"),
    })
}

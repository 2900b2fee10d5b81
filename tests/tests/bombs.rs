//! Decompression bombs: 4 MiB of gzip that inflates to 4 GiB of zeros, given to `classify`,
//! `diff`, `flamegraph` and (served by a loopback pprof endpoint) `inspect`. Each refuses it
//! with one line naming --max-profile-size, and its peak RSS (the kernel's ru_maxrss of the
//! child, from wait4) stays within the bound the limit promises.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use flate2::{Compress, Compression, Crc, FlushCompress};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A single-member gzip file of `chunks` × 64 MiB of zeros. The zeros are compressed once,
/// ending in a full flush (byte-aligned, no back references past it), so the same deflate
/// bytes repeated are one valid stream; the trailer carries the true CRC and size.
fn zero_bomb(chunks: u32) -> Vec<u8> {
    let chunk_len = 64 * MIB as usize;
    let zeros = vec![0u8; chunk_len];
    let deflate = |input: &[u8], flush: FlushCompress| {
        let mut compress = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(1 << 20);
        compress.compress_vec(input, &mut out, flush).unwrap();
        assert_eq!(
            compress.total_in(),
            input.len() as u64,
            "one call compresses it all"
        );
        out
    };
    let chunk = deflate(&zeros, FlushCompress::Full);
    let mut crc = Crc::new();
    let mut chunk_crc = Crc::new();
    chunk_crc.update(&zeros);
    let mut gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
    for _ in 0..chunks {
        gzip.extend_from_slice(&chunk);
        crc.combine(&chunk_crc);
    }
    gzip.extend_from_slice(&deflate(&[], FlushCompress::Finish));
    gzip.extend_from_slice(&crc.sum().to_le_bytes());
    gzip.extend_from_slice(&((u64::from(chunks) * chunk_len as u64) as u32).to_le_bytes());
    gzip
}

fn write_bomb(dir: &Path) -> std::path::PathBuf {
    let bomb = zero_bomb(64);
    assert!(bomb.len() as u64 <= 5 * MIB, "{} bytes", bomb.len());
    let path = dir.join("bomb.pb.gz");
    std::fs::write(&path, &bomb).unwrap();
    path
}

/// Runs timerscope to completion: exit status, stdout, stderr, and peak RSS in bytes.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also gives its rusage"
)]
fn run_measured(args: &[&str]) -> (i32, String, String, u64) {
    let mut child = Command::new(common::timerscope())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut out_pipe = child.stdout.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        out_pipe.read_to_string(&mut s).unwrap();
        s
    });
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stdout.push_str(&out_reader.join().unwrap());
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child is ours and not yet reaped; both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let status = std::process::ExitStatus::from_raw(status);
    (
        status.code().unwrap_or(-1),
        stdout,
        stderr,
        usage.ru_maxrss as u64 * 1024,
    )
}

fn assert_refused(args: &[&str], limit: &str, max_rss: u64) {
    let (code, _, stderr, rss) = run_measured(args);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--max-profile-size") && stderr.contains(limit),
        "{stderr}"
    );
    assert!(rss <= max_rss, "{args:?}: peak RSS {} MiB", rss / MIB);
    eprintln!("{args:?}: peak RSS {} MiB", rss / MIB);
}

#[test]
fn classify_diff_and_flamegraph_refuse_a_bomb_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = write_bomb(dir.path());
    let bomb = bomb.to_str().unwrap();
    let svg = dir.path().join("out.svg");
    let svg = svg.to_str().unwrap();
    assert_refused(&["classify", bomb], "1.0 GiB", 5 * GIB / 2);
    let small = ["--max-profile-size", "128MiB"];
    for args in [
        &["classify", bomb][..],
        &["diff", bomb, bomb],
        &["flamegraph", bomb, "-o", svg],
    ] {
        let args: Vec<&str> = args.iter().chain(&small).copied().collect();
        assert_refused(&args, "128.0 MiB", 300 * MIB);
    }
    assert!(!Path::new(svg).exists());
}

/// A pprof endpoint whose every profile is the bomb.
fn serve_bomb(bomb: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bomb.len()
            );
            let _ = stream.write_all(&bomb);
        }
    });
    port
}

#[test]
fn inspect_refuses_a_served_bomb_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = serve_bomb(zero_bomb(64));
    let targets = dir.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!("[[services]]\nname = \"bomb\"\nurl = \"http://127.0.0.1:{port}\"\nprofiles = [\"heap\"]\n"),
    )
    .unwrap();
    let store = dir.path().join("store");
    let base = [
        "inspect",
        "--targets",
        targets.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    for (extra, limit, max_rss) in [
        (&[][..], "1.0 GiB", 5 * GIB / 2),
        (
            &["--max-profile-size", "128MiB"][..],
            "128.0 MiB",
            300 * MIB,
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stdout, stderr, rss) = run_measured(&args);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("--max-profile-size") && stdout.contains(limit),
            "{stdout}"
        );
        assert!(rss <= max_rss, "peak RSS {} MiB", rss / MIB);
        eprintln!("inspect {extra:?}: peak RSS {} MiB", rss / MIB);
    }
}

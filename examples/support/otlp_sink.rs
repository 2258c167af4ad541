//! An OTLP/HTTP collector stand-in on loopback, for the benchmarks that export spans and
//! metrics: it reads every export whole and answers 200 at once, without decoding it, so that
//! what it costs is the collector's, never the exporter's.

/// An OTLP/HTTP collector stand-in on loopback that reads every export and answers 200 at
/// once, a thread per connection: where a traced gateway's spans and metrics go.
pub(crate) fn otlp_sink() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let (mut reader, mut stream) = (BufReader::new(read), stream);
                loop {
                    let (mut length, mut line) = (0usize, String::new());
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if reader.read_exact(&mut body).is_err() || stream.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

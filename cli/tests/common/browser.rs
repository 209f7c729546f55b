//! Headless Chromium driven over the DevTools protocol, so that a test can type into the
//! inspector page and click its buttons as a person does. The protocol runs over a WebSocket;
//! the few frames it needs (text, unfragmented or continued, client-masked) are written here
//! on a plain `TcpStream` rather than pulling a WebSocket crate into the build.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long the page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// How every test runs Chromium: headless, in this container (no sandbox, GPU or shared memory).
pub const HEADLESS: [&str; 5] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
];

/// A headless Chromium with one page open, attached over the DevTools protocol.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    socket: TcpStream,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Opens `url` in a new headless Chromium, or `None` when the browser tests are skipped
    /// (WORKFLOWS_SKIP_BROWSER).
    pub fn open(url: &str) -> Option<Self> {
        if std::env::var_os("WORKFLOWS_SKIP_BROWSER").is_some() {
            eprintln!("skipped: WORKFLOWS_SKIP_BROWSER is set");
            return None;
        }
        let profile =
            std::env::temp_dir().join(format!("workflows-chromium-{}", uuid::Uuid::new_v4()));
        let child = Command::new("chromium")
            .args(HEADLESS)
            .args([
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromium ({e}): install Debian's chromium package, or set WORKFLOWS_SKIP_BROWSER=1")
            });
        // Chromium writes the port it chose and the browser's endpoint to this file once it
        // listens.
        let active = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + PATIENCE;
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&active)
                && let Some((port, path)) = text.split_once('\n')
                && !path.trim().is_empty()
            {
                break (port.trim().to_owned(), path.trim().to_owned());
            }
            assert!(Instant::now() < deadline, "chromium never listened");
            std::thread::sleep(Duration::from_millis(50));
        };
        let socket = connect(&endpoint.0, &endpoint.1);
        let mut browser = Browser {
            child,
            profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        Some(browser)
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page (it is checked every 50 ms).
    pub fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.eval(&format!("!!({expression})")) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "the page never showed {expression}: {}",
                self.eval("document.body.innerHTML")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Scrolls to the element `selector` and clicks its middle with the mouse, as a person does.
    pub fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); \
             e.scrollIntoView({{ block: 'center' }}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": at[0], "y": at[1], "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Types `text` into the element `selector`: clicks it, then sends the text as keyboard
    /// input.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.call("Input.insertText", json!({ "text": text }));
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        send_text(&mut self.socket, &message.to_string());
        loop {
            let reply: Value = serde_json::from_str(&receive_text(&mut self.socket)).unwrap();
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Opens the WebSocket at `path` on the local `port`.
fn connect(port: &str, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    // The handshake's answer, byte by byte so that nothing after it is read ahead.
    let mut head = Vec::new();
    let mut reader = BufReader::with_capacity(1, socket.try_clone().unwrap());
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        reader.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let status = head.lines().next().unwrap().unwrap();
    assert!(status.contains(" 101 "), "no WebSocket: {status}");
    socket
}

fn send_text(socket: &mut TcpStream, text: &str) {
    let payload = text.as_bytes();
    let mut frame = vec![0x81]; // a whole text message
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    // A client masks what it sends; any key will do.
    let mask = [0x12, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).unwrap();
}

fn receive_text(socket: &mut TcpStream) -> String {
    let mut message = Vec::new();
    loop {
        let mut head = [0; 2];
        socket.read_exact(&mut head).unwrap();
        let length = match head[1] & 0x7f {
            126 => {
                let mut n = [0; 2];
                socket.read_exact(&mut n).unwrap();
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0; 8];
                socket.read_exact(&mut n).unwrap();
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; length];
        socket.read_exact(&mut payload).unwrap();
        let opcode = head[0] & 0x0f;
        assert!(opcode <= 2, "unexpected WebSocket frame {opcode}");
        message.extend_from_slice(&payload);
        if head[0] & 0x80 != 0 {
            return String::from_utf8(message).unwrap();
        }
    }
}

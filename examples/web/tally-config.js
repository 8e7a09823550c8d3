// The collector and its write key. The write key is public by design: a
// page can only append events with it (see docs/browser-sdk.md).
window.TALLY = { host: "http://127.0.0.1:8080", key: "demo-write-key-1" };

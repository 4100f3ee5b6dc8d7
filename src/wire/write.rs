//! Writing framed lines: one task owns an output (the client's stdout, a child's stdin) and
//! writes what is queued for it, coalescing whatever is waiting into one write.

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most bytes gathered into one write.
const COALESCE: usize = 1024 * 1024;

/// Write queued lines (each already ending in `\n`) until the queue closes or `stop` fires,
/// then shut the output down (for a child's stdin, that is how it is asked to exit).
pub async fn write_queued<W: AsyncWrite + Unpin>(
    mut output: W,
    mut queue: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            first = queue.recv() => match first {
                Some(first) => first,
                None => break,
            },
            _ = stop.cancelled() => break,
        };
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < COALESCE
            && let Ok(more) = queue.try_recv()
        {
            buf.extend_from_slice(&more);
        }
        if output.write_all(&buf).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
    let _ = output.shutdown().await;
}

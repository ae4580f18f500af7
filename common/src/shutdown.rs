//! One [`CancellationToken`] per process, cancelled on SIGTERM or SIGINT.
//!
//! Every loop selects on the token; what a service does once it is
//! cancelled (drain, commit, leave the group) is bounded by its own deadline.

use tokio_util::sync::CancellationToken;

/// Spawns a task that cancels `token` on the first SIGTERM or SIGINT.
///
/// A second signal is not special-cased: draining is already bounded in time,
/// and Kubernetes follows up with SIGKILL after the grace period.
pub(crate) fn cancel_on_signal(token: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let signal = wait_for_signal();
        tokio::select! {
            name = signal => {
                tracing::info!(signal = name, "shutdown requested");
                token.cancel();
            }
            () = token.cancelled() => {}
        }
    })
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Installing handlers only fails when the runtime has no signal
            // driver; fall back to Ctrl-C so the process stays stoppable.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

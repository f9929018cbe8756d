//! The HTTP server the bin's stand-in peers (`whg mock-practice`, `whg dev-issuer`) run on: a
//! runtime, the listener bound, the router `start` makes for the address it got (the port may
//! have been the system's choice), served until Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Serves what `start` makes on `listen` until Ctrl-C; `name` is for the error messages.
pub fn run<F, Fut>(name: &str, listen: SocketAddr, start: F) -> ExitCode
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = axum::Router>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whg: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("whg: cannot listen on {listen}: {e}");
                return ExitCode::from(2);
            }
        };
        let app = start(listener.local_addr().unwrap_or(listen)).await;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("whg: {name} stopped: {e}");
                ExitCode::from(1)
            }
        }
    })
}

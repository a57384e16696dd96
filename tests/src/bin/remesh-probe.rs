//! `remesh-probe`: a one-shot REAPI and admin client for tests that must act from
//! inside a network namespace (`ip netns exec NS remesh-probe …`), where the test
//! process itself cannot open sockets.
//!
//! - `remesh-probe execute ADDR SALT SHELL_COMMAND`: uploads an action running
//!   `/bin/sh -c SHELL_COMMAND` (never cached, `SALT` makes it unique), executes it
//!   through `ADDR` (instance `main`) and prints one JSON line
//!   `{"name":…,"exit_code":…,"status_code":…}` once the operation is done.
//! - `remesh-probe wait ADDR NAME`: WaitExecution on operation `NAME` through `ADDR`;
//!   prints the same line.
//! - `remesh-probe get ADDR PATH`: a plain HTTP GET; prints the body, fails on a
//!   status other than 200.
//!
//! Every network step is bounded, so a partitioned peer cannot hang the probe.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use prost::Message;
use remesh_proto::longrunning::{Operation, operation};
use remesh_proto::reapi::{ExecuteRequest, ExecuteResponse, WaitExecutionRequest};
use remesh_tests::reapi_client::{ActionSpec, Clients};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest any one probe may take.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = async {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["execute", addr, salt, shell] => execute(addr.parse()?, salt, shell).await,
            ["wait", addr, name] => wait(addr.parse()?, name).await,
            ["get", addr, path] => get(addr.parse()?, path).await,
            _ => bail!(
                "usage: remesh-probe execute ADDR SALT SHELL | wait ADDR NAME | get ADDR PATH"
            ),
        }
    };
    tokio::time::timeout(LIMIT, work)
        .await
        .with_context(|| format!("remesh-probe {args:?} took longer than {LIMIT:?}"))?
}

async fn execute(addr: SocketAddr, salt: &str, shell: &str) -> anyhow::Result<()> {
    let clients = Clients::connect(addr, "main").await?;
    let mut spec = ActionSpec::new(&["/bin/sh", "-c", shell]);
    spec.do_not_cache = true;
    spec.salt = salt.as_bytes().to_vec();
    let action_digest = clients.upload_action(&spec).await?;
    let stream = clients
        .execution
        .clone()
        .execute(ExecuteRequest {
            instance_name: "main".into(),
            skip_cache_lookup: true,
            action_digest: Some(action_digest),
            ..ExecuteRequest::default()
        })
        .await
        .context("Execute")?
        .into_inner();
    report_done(stream).await
}

async fn wait(addr: SocketAddr, name: &str) -> anyhow::Result<()> {
    let clients = Clients::connect(addr, "main").await?;
    let stream = clients
        .execution
        .clone()
        .wait_execution(WaitExecutionRequest { name: name.into() })
        .await
        .context("WaitExecution")?
        .into_inner();
    report_done(stream).await
}

/// Follows an operation stream to its end and prints the final result as JSON.
async fn report_done(mut stream: tonic::Streaming<Operation>) -> anyhow::Result<()> {
    while let Some(operation) = stream.message().await.context("operation stream")? {
        if !operation.done {
            continue;
        }
        let Some(operation::Result::Response(any)) = operation.result else {
            bail!("operation {} is done without a response", operation.name);
        };
        let response = ExecuteResponse::decode(any.value.as_slice())?;
        let line = serde_json::json!({
            "name": operation.name,
            "exit_code": response.result.map(|result| result.exit_code),
            "status_code": response.status.map_or(0, |status| status.code),
        });
        println!("{line}");
        return Ok(());
    }
    bail!("the stream ended before the operation was done")
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers in the response")?;
    if head.split(' ').nth(1) != Some("200") {
        bail!("GET {path}: {head}");
    }
    print!("{body}");
    Ok(())
}

//! Tests of the operation registry: merging, completion, retention on a paused clock.

use super::*;
use remesh_proto::reapi::ActionResult;

fn digest(n: u8) -> BlobDigest {
    BlobDigest::of_bytes(&[n])
}

fn response(exit_code: i32) -> ExecuteResponse {
    ExecuteResponse {
        result: Some(ActionResult {
            exit_code,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn new_operation(registry: &OperationRegistry, n: u8) -> Arc<Operation> {
    match registry.admit(&digest(n), false, Stage::Queued) {
        Admission::New(operation) => operation,
        Admission::Merged(_) => panic!("nothing to merge with"),
    }
}

#[test]
fn identical_actions_merge_until_done() {
    let registry = OperationRegistry::new(Duration::from_secs(60), 100);
    let first = new_operation(&registry, 1);
    assert!(first.name().starts_with("operations/"));
    match registry.admit(&digest(1), false, Stage::Queued) {
        Admission::Merged(same) => assert!(Arc::ptr_eq(&same, &first)),
        Admission::New(_) => panic!("identical in-flight action was not merged"),
    }
    // A different action is not merged.
    let other = new_operation(&registry, 2);
    assert_ne!(other.name(), first.name());

    assert!(registry.complete(&first, response(0)));
    assert!(
        !registry.complete(&first, response(1)),
        "second completion must lose"
    );
    assert_eq!(
        first
            .state()
            .response
            .unwrap()
            .result
            .as_ref()
            .unwrap()
            .exit_code,
        0
    );
    // Done operations are not joined: the next Execute starts afresh.
    let third = new_operation(&registry, 1);
    assert_ne!(third.name(), first.name());
}

#[test]
fn skip_cache_lookup_does_not_join_a_cache_check() {
    let registry = OperationRegistry::new(Duration::from_secs(60), 100);
    let checking = match registry.admit(&digest(1), false, Stage::CacheCheck) {
        Admission::New(operation) => operation,
        Admission::Merged(_) => unreachable!(),
    };
    assert!(matches!(
        registry.admit(&digest(1), true, Stage::Queued),
        Admission::New(_)
    ));
    // The newer one is now the one merged with; the old one's completion must not
    // remove it from the index.
    registry.complete(&checking, response(0));
    assert!(matches!(
        registry.admit(&digest(1), true, Stage::Queued),
        Admission::Merged(_)
    ));
}

#[test]
fn stages_only_move_forward() {
    let registry = OperationRegistry::new(Duration::from_secs(60), 100);
    let operation = new_operation(&registry, 1);
    operation.advance(Stage::Executing);
    operation.advance(Stage::Queued);
    assert_eq!(operation.state().stage, Stage::Executing);
    registry.complete(&operation, response(0));
    operation.advance(Stage::Executing);
    let state = operation.state();
    assert_eq!(state.stage, Stage::Completed);
    assert!(state.is_done());
}

#[test]
fn wire_form_carries_metadata_and_response_never_error() {
    let registry = OperationRegistry::new(Duration::from_secs(60), 100);
    let operation = new_operation(&registry, 7);
    let running = operation.to_proto();
    assert!(!running.done);
    assert!(running.result.is_none());
    let metadata = running.metadata.unwrap();
    assert_eq!(metadata.type_url, METADATA_TYPE_URL);
    let metadata = ExecuteOperationMetadata::decode(metadata.value.as_slice()).unwrap();
    assert_eq!(metadata.stage, execution_stage::Value::Queued as i32);
    assert_eq!(metadata.action_digest, Some(digest(7).to_proto()));

    registry.complete(&operation, response(3));
    let done = operation.to_proto();
    assert!(done.done);
    match done.result {
        Some(longrunning::operation::Result::Response(any)) => {
            assert_eq!(any.type_url, RESPONSE_TYPE_URL);
            let response = ExecuteResponse::decode(any.value.as_slice()).unwrap();
            assert_eq!(response.result.unwrap().exit_code, 3);
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn done_operations_are_forgotten_after_retention() {
    let registry = OperationRegistry::new(Duration::from_secs(600), 100);
    let operation = new_operation(&registry, 1);
    let name = operation.name().to_owned();
    tokio::time::advance(Duration::from_secs(3600)).await;
    // Running operations are never forgotten, however old.
    assert!(registry.get(&name).is_ok());
    registry.complete(&operation, response(0));
    tokio::time::advance(Duration::from_secs(599)).await;
    assert!(
        registry.get(&name).is_ok(),
        "forgotten before retention ended"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(matches!(
        registry.get(&name),
        Err(ExecutionError::UnknownOperation(_))
    ));
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn retained_operations_are_bounded_in_number() {
    let registry = OperationRegistry::new(Duration::from_secs(600), 3);
    let names: Vec<String> = (0..5)
        .map(|n| {
            registry
                .insert_done(&digest(n), response(0))
                .name()
                .to_owned()
        })
        .collect();
    assert_eq!(registry.len(), 3);
    assert!(registry.get(&names[0]).is_err());
    assert!(registry.get(&names[1]).is_err());
    assert!(registry.get(&names[4]).is_ok());
}

#[test]
fn pages_follow_name_order_and_end() {
    let registry = OperationRegistry::new(Duration::from_secs(600), 100);
    for n in 0..5 {
        new_operation(&registry, n);
    }
    let (first, more) = registry.page("", 2);
    assert!(more);
    let (second, more) = registry.page(first[1].name(), 2);
    assert!(more);
    let (third, more) = registry.page(second[1].name(), 2);
    assert!(!more);
    let mut seen: Vec<String> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|operation| operation.name().to_owned())
        .collect();
    assert_eq!(seen.len(), 5);
    let sorted = {
        let mut sorted = seen.clone();
        sorted.sort();
        sorted
    };
    assert_eq!(seen, sorted);
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[test]
fn delete_refuses_running_and_forgets_done() {
    let registry = OperationRegistry::new(Duration::from_secs(600), 100);
    let operation = new_operation(&registry, 1);
    assert!(matches!(
        registry.delete(operation.name()),
        Err(ExecutionError::FailedPrecondition(_))
    ));
    registry.complete(&operation, response(0));
    registry.delete(operation.name()).unwrap();
    assert!(registry.get(operation.name()).is_err());
    assert!(matches!(
        registry.delete("operations/nope"),
        Err(ExecutionError::UnknownOperation(_))
    ));
}

#[test]
fn concurrent_identical_admissions_merge() {
    let registry = Arc::new(OperationRegistry::new(Duration::from_secs(60), 100));
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let registry = registry.clone();
                scope.spawn(move || {
                    let operation = match registry.admit(&digest(9), false, Stage::Queued) {
                        Admission::New(operation) | Admission::Merged(operation) => operation,
                    };
                    operation.name().to_owned()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(names.iter().all(|name| *name == names[0]), "{names:?}");
    assert_eq!(registry.len(), 1);
}

//! `check`: runs a named check of the suite's protocol, written in Rust,
//! with the step's arguments (variables expanded).

use serde_json::Value;

use crate::protocol::CheckCx;
use crate::run::cx::Cx;
use crate::run::failure::{StepError, miss};
use crate::suite::{Check, Step};
use crate::sut::SutInstance;

pub(super) async fn run(
    c: &Check,
    _step: &Step,
    cx: &mut Cx<'_>,
    _sut: &mut SutInstance,
) -> Result<(), StepError> {
    let args = cx
        .vars
        .expand(&Value::Object(c.args.clone().into_iter().collect()))
        .map_err(|e| miss("check arguments whose variables are set", e))?;
    let args = args.as_object().cloned().unwrap_or_default();
    let protocol = cx.protocol();
    let checked = protocol
        .check(
            &c.name,
            &args,
            CheckCx {
                link: &cx.link,
                collected: &cx.collected,
            },
        )
        .await;
    checked?.map_err(|e| miss(format!("check `{}` passes", c.name), e))
}

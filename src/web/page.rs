//! The one "status + template" responder the pages answer with: a rendered page and its status
//! (a refused form is 422, a wrong code 401…), with `Retry-After` when a refusal says when to
//! try again; or, after a form that worked, a redirect.

use rocket::http::Status;
use rocket::request::Request;
use rocket::response::{self, Redirect, Responder};
use rocket_dyn_templates::Template;

/// A page with its status.
pub struct Page {
    pub status: Status,
    pub template: Template,
    /// Seconds for `Retry-After` (a throttled or overloaded form).
    pub retry_after: Option<u64>,
}

impl Page {
    pub fn new(status: Status, template: Template) -> Page {
        Page { status, template, retry_after: None }
    }
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut res = self.template.respond_to(req)?;
        res.set_status(self.status);
        if let Some(secs) = self.retry_after {
            crate::error::set_retry_after(&mut res, secs);
        }
        Ok(res)
    }
}

/// What a form's handler answers: where to go next, or the page again.
#[derive(rocket::Responder)]
pub enum Reply {
    Done(Redirect),
    Page(Page),
}

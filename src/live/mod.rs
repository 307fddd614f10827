//! Live updates: one Redis pub/sub subscriber per process fans transaction events out to the
//! browsers of each account over server-sent events, with replay from the account stream.

pub mod bridge;
pub mod event;
pub mod routes;

use std::sync::Arc;

use rocket::fairing::AdHoc;
use rocket::routes;

use crate::config::Config;
use crate::redis::Db;
use bridge::Hub;

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Live updates", |rocket| async {
        let queue = rocket.state::<Config>().map_or(256, |c| c.sse_queue);
        rocket.manage(Arc::new(Hub::new(queue))).mount("/", routes![routes::events]).attach(
            AdHoc::on_liftoff("Pub/sub bridge", |rocket| {
                Box::pin(async move {
                    let (Some(hub), Some(db)) = (rocket.state::<Arc<Hub>>(), rocket.state::<Db>())
                    else {
                        return;
                    };
                    let url: String = match rocket.figment().extract_inner("databases.redis.url") {
                        Ok(url) => url,
                        Err(e) => {
                            rocket::error!("live: no databases.redis.url: {e}");
                            return;
                        }
                    };
                    tokio::spawn(bridge::run(
                        url,
                        db.keys.events_pattern(),
                        hub.clone(),
                        rocket.shutdown(),
                    ));
                })
            }),
        )
    })
}

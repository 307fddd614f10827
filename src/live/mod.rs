//! Live updates: one Redis pub/sub subscriber per process fans transaction events out to the
//! browsers of each account over server-sent events, with replay from the account stream — on
//! Rocket's `/events` and, when `stream_port` is set, on the lean stream listener.

pub mod bridge;
pub mod event;
pub mod feed;
pub mod listener;
pub mod routes;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use rocket::fairing::AdHoc;
use rocket::routes;

use crate::config::Config;
use crate::redis::Db;
use bridge::Hub;

/// The bound stream listener, between ignite (bind) and liftoff (serve).
struct StreamSocket(Mutex<Option<tokio::net::TcpListener>>);

pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Live updates", |rocket| async {
        let Some(config) = rocket.state::<Config>().cloned() else { return Err(rocket) };
        let socket = match config.stream_port {
            0 => None,
            port if rocket.figment().extract_inner::<u16>("port").is_ok_and(|p| p == port) => {
                rocket::error!("configuration: stream_port must differ from port ({port})");
                return Err(rocket);
            }
            port => {
                let address: IpAddr = match rocket.figment().extract_inner("address") {
                    Ok(address) => address,
                    Err(e) => {
                        rocket::error!("stream listener: bad address: {e}");
                        return Err(rocket);
                    }
                };
                match listener::bind(SocketAddr::new(address, port)) {
                    Ok(socket) => Some(socket),
                    Err(e) => {
                        rocket::error!("stream listener: cannot listen on {address}:{port}: {e}");
                        return Err(rocket);
                    }
                }
            }
        };
        Ok(rocket
            .manage(Arc::new(Hub::new(config.sse_queue)))
            .manage(StreamSocket(Mutex::new(socket)))
            .mount("/", routes![routes::events])
            .attach(AdHoc::on_liftoff("Pub/sub bridge and stream listener", |rocket| {
                Box::pin(async move {
                    let (Some(hub), Some(db), Some(config)) = (
                        rocket.state::<Arc<Hub>>(),
                        rocket.state::<Db>(),
                        rocket.state::<Config>(),
                    ) else {
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
                    let socket = rocket
                        .state::<StreamSocket>()
                        .and_then(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).take());
                    if let Some(socket) = socket {
                        if let Ok(addr) = socket.local_addr() {
                            rocket::info!("stream listener: GET /events on http://{addr}");
                        }
                        let context = listener::Context {
                            db: db.clone(),
                            hub: hub.clone(),
                            config: config.clone(),
                            ip_header: rocket.config().ip_header.as_ref().map(|h| h.to_string()),
                        };
                        tokio::spawn(listener::serve(socket, Arc::new(context), rocket.shutdown()));
                    }
                })
            })))
    })
}

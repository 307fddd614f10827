//! Live updates: one Redis pub/sub subscriber per process fans transaction events out to the
//! browsers of each account over server-sent events, with replay from the account stream — on
//! Rocket's `/events` and, when `stream_port` is set, on the lean stream listener.

pub mod bridge;
pub mod event;
pub mod feed;
pub mod listener;
pub mod routes;
mod subscriber;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use rocket::fairing::{self, AdHoc, Fairing, Info, Kind};
use rocket::{Build, Orbit, Rocket, routes};

use crate::config::Config;
use crate::redis::Db;
use crate::stage::{self, needs};
use bridge::Hub;

pub fn stage() -> AdHoc {
    stage::with_both("Live updates", |rocket, db: Db, config: Config| async move {
        let (hub, interest) = Hub::new(config.live.queue);
        let hub = Arc::new(hub);
        let listener =
            StreamListener { socket: Mutex::default(), hub: hub.clone(), db: db.clone() };
        Ok(rocket
            .manage(hub.clone())
            .mount("/", routes![routes::events])
            .attach(AdHoc::on_liftoff("Pub/sub bridge", move |rocket| {
                // The one subscriber connection of this process, until shutdown.
                Box::pin(async move {
                    // In demo mode the generator writes for the customers' accounts someone
                    // watches: say which ones this instance streams.
                    if config.demo_users && config.bank.generator_interval_ms > 0 {
                        let watched = hub.clone();
                        tokio::spawn(note_watched(db.clone(), watched, rocket.shutdown()));
                    }
                    tokio::spawn(bridge::run(db, hub, interest, rocket.shutdown()));
                })
            }))
            .attach(listener))
    })
}

/// The stream listener (`stream_port`) as its own fairing: ignite binds (so a taken port stops the
/// launch with a clear error), liftoff serves until shutdown. The socket waits in between here.
struct StreamListener {
    socket: Mutex<Option<tokio::net::TcpListener>>,
    hub: Arc<Hub>,
    db: Db,
}

#[rocket::async_trait]
impl Fairing for StreamListener {
    fn info(&self) -> Info {
        Info { name: "Stream listener", kind: Kind::Ignite | Kind::Liftoff }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let Some(port) = needs::<Config>(&rocket, "Stream listener").map(|c| c.live.stream_port)
        else {
            return Err(rocket);
        };
        if port == 0 {
            return Ok(rocket);
        }
        if rocket.figment().extract_inner::<u16>("port").is_ok_and(|p| p == port) {
            rocket::error!("configuration: stream_port must differ from port ({port})");
            return Err(rocket);
        }
        let address: IpAddr = match rocket.figment().extract_inner("address") {
            Ok(address) => address,
            Err(e) => {
                rocket::error!("stream listener: bad address: {e}");
                return Err(rocket);
            }
        };
        match listener::bind(SocketAddr::new(address, port)) {
            Ok(socket) => {
                *self.socket.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket);
                Ok(rocket)
            }
            Err(e) => {
                rocket::error!("stream listener: cannot listen on {address}:{port}: {e}");
                Err(rocket)
            }
        }
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        let Some(socket) = self.socket.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        // Present: ignite (which bound the socket) checked it.
        let Some(config) = rocket.state::<Config>() else { return };
        if let Ok(addr) = socket.local_addr() {
            rocket::info!("stream listener: GET /events on http://{addr}");
        }
        let context = listener::Context {
            db: self.db.clone(),
            hub: self.hub.clone(),
            config: config.clone(),
            ip_header: rocket.config().ip_header.as_ref().map(|h| h.to_string()),
        };
        tokio::spawn(listener::serve(socket, Arc::new(context), rocket.shutdown()));
    }
}

/// Every [`crate::bank::store::WATCH_REFRESH`] until `shutdown`: the accounts this instance
/// streams now, for the generator. A failure is logged once and tried again the next time.
async fn note_watched(db: Db, hub: Arc<Hub>, mut shutdown: rocket::Shutdown) {
    let mut ticker = tokio::time::interval(crate::bank::store::WATCH_REFRESH);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let watched = hub.watched();
        match crate::bank::store::note_watched(&db, &watched, crate::clock::now_ms()).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                rocket::warn!("live: the watched accounts were not noted ({e})");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

# Multi-stage build: compile in the Rust image, run in a slim Debian with only the binary and assets.
FROM rust:1-bookworm AS build
WORKDIR /app
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin redbank

FROM debian:bookworm-slim
# CA certificates: the SMTP client verifies the mail server's TLS certificate (smtp_url).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /app redbank
WORKDIR /app
COPY --from=build /app/target/release/redbank /usr/local/bin/redbank
COPY Rocket.toml ./
COPY templates ./templates
COPY static ./static
USER redbank
ENV ROCKET_PROFILE=release ROCKET_ADDRESS=0.0.0.0 ROCKET_PORT=8080
EXPOSE 8080 8081
CMD ["redbank"]

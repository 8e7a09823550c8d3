# UNTESTED: Docker is not available where this project is built and tested.
# Builds the `tally` binary and runs the collector with its data in /data.
#
#   docker build -t tally .
#   docker run -d -p 127.0.0.1:8080:8080 -v tally-data:/data tally

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tally-collector --bin tally

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /data --shell /usr/sbin/nologin tally \
    && mkdir /data && chown tally /data
COPY --from=build /src/target/release/tally /usr/local/bin/tally
USER tally
VOLUME /data
EXPOSE 8080
# Inside the container, listen on every interface; publish the port on the
# host as narrowly as you need (127.0.0.1:8080:8080 behind a proxy).
ENV TALLY_DATA=/data TALLY_LISTEN=0.0.0.0:8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["tally"]
CMD ["serve"]

# One image for every upshift process: `upshift orchestrator`, `upshift worker --tier …`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin upshift

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/upshift /usr/local/bin/upshift
USER 65532:65532
ENTRYPOINT ["upshift"]

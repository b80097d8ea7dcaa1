# One image for every upshift process: `upshift orchestrator`, `upshift worker --tier …`.
# Local GGUF models are not baked in: mount a directory filled by
# `upshift models fetch` at /models (UPSHIFT_MODEL_DIR).
FROM rust:1.95-bookworm AS build
# llama.cpp (llama-cpp-sys-2) builds with CMake and needs libclang for bindgen.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin upshift

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/upshift /usr/local/bin/upshift
ENV UPSHIFT_MODEL_DIR=/models
USER 65532:65532
ENTRYPOINT ["upshift"]

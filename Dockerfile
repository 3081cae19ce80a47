# syntax=docker/dockerfile:1
# proxyfn in server mode. Build: docker build -t proxyfn .   Run: docker run -p 8080:8080 proxyfn

FROM rust:1-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: a stub crate with the real manifest and lock file,
# so editing src/ does not rebuild every dependency.
COPY Cargo.toml Cargo.lock ./
# (Cargo checks that every declared target exists, so the benchmark gets a stub too.)
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/auth.rs \
    && echo 'fn main() {}' > benches/ratelimit.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/proxyfn* target/release/deps/proxyfn* target/release/deps/libproxyfn* target/release/.fingerprint/proxyfn-*

COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked

# distroless/cc: glibc and libgcc only, no shell; the nonroot tag runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/proxyfn /usr/local/bin/proxyfn
COPY proxyfn.toml /etc/proxyfn/proxyfn.toml
COPY schemas /etc/proxyfn/schemas
ENV PROXYFN_CONFIG=/etc/proxyfn/proxyfn.toml \
    PROXYFN_SERVER__LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/proxyfn"]
CMD ["serve"]

# proxyfn in server mode. Build: docker build -t proxyfn .   Run: docker run -p 8080:8080 proxyfn

FROM rust:1-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: a stub crate with the real manifest and lock file,
# so editing src/ does not rebuild every dependency. Cargo checks that every target the
# manifest declares exists, so each [[bench]] gets a stub too, named from Cargo.toml itself;
# scripts/check-dockerfile (run by scripts/test) runs this step against the manifest.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' Cargo.toml); do \
           echo 'fn main() {}' > "benches/$bench.rs"; \
       done
RUN cargo build --release --locked \
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
# No shell or curl in the image: the binary asks itself (GET /health on the configured port).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/proxyfn", "health"]
ENTRYPOINT ["/usr/local/bin/proxyfn"]
CMD ["serve"]

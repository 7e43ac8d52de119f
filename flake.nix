{
  # podgrant: the watch/grant engine (core/), the simulated API server (sim/), the harness
  # (harness/) and the benches (benches/), built with crane following its
  # quick-start-workspace example: ONE dependency-artifacts derivation (`cargoArtifacts`)
  # that every package and check below reuses.
  #
  # The checks run the same scripts as `.ci/run` (scripts/check-*.sh), so what `nix flake
  # check` runs is exercised on every CI run outside Nix too.
  #
  # Offline evaluation of this file (no nixpkgs, no crane): scripts/check-nix.sh, which
  # overrides every input with the stub flakes under nix/stubs/.
  description = "podgrant: level-triggered MySQL grants for the pods behind Kubernetes Services";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # A release tag, so that moving crane is a decision (`nix flake lock --update-input crane`
    # re-locks flake.lock to it). crane 0.22.0 dropped Nix below 2.31.2 (its CHANGELOG), so
    # this needs Nix >= 2.31.2, not 2.18: older Nix fails evaluating crane itself. flake.lock
    # holds the tag's commit (10e6e3c, 2026-05-17; narHash computed from the tag's tree and
    # checked by recomputing the previous lock's). The offline check on Debian's Nix 2.8
    # (scripts/check-nix.sh) swaps in nix/stubs/crane instead.
    crane.url = "github:ipetkov/crane/v0.23.4";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      flake-utils,
      ...
    }:
    # Linux only: the test suite spawns mariadbd and the benches use valgrind and per-thread
    # CPU clocks from /proc.
    flake-utils.lib.eachSystem [ "x86_64-linux" "aarch64-linux" ] (
      system:
      let
        pkgs = nixpkgs.legacyPackages.${system};
        inherit (pkgs) lib;

        craneLib = crane.mkLib pkgs;

        # Rust sources plus what tests and checks read at run time: scenario/fault JSON files,
        # the check scripts, kubeconfig/YAML fixtures.
        extraSource =
          path: _type:
          lib.hasSuffix ".json" path
          || lib.hasSuffix ".yaml" path
          || lib.hasSuffix ".sh" path
          || lib.hasSuffix ".txt" path;
        src = lib.cleanSourceWith {
          src = ./.;
          name = "podgrant-source";
          filter = path: type: (craneLib.filterCargoSources path type) || (extraSource path type);
        };

        # Everything the scripts need at build time, beyond cargo/rustc (crane adds those).
        testTools = [
          pkgs.mariadb # the harness spawns its own mariadbd in the sandbox (no network, no Docker)
          pkgs.kubectl # sim's kubectl compatibility tests
          pkgs.go # `go tool pprof` reads the harness's profiles (required below)
          pkgs.bash
        ];

        commonArgs = {
          inherit src;
          pname = "podgrant";
          strictDeps = true;
          nativeBuildInputs = [ pkgs.pkg-config ];
          buildInputs = [ ];
        };

        # Build *only* the dependencies, once, for every profile the checks use: the dev
        # profile (clippy, tests, scenarios) and release/bench (package, bench smoke).
        # Every derivation below takes it as `cargoArtifacts`.
        cargoArtifacts = craneLib.buildDepsOnly (
          commonArgs
          // {
            pname = "podgrant-deps";
            cargoCheckCommand = "cargo check --profile dev --workspace --all-targets";
            cargoBuildCommand = "cargo build --profile dev --workspace --all-targets --locked && cargo build --profile release --workspace --all-targets";
            doCheck = false;
          }
        );

        # The three binaries: podgrant (engine), podgrant-harness, podgrant-sim.
        podgrant = craneLib.buildPackage (
          commonArgs
          // {
            inherit cargoArtifacts;
            cargoExtraArgs = "--locked -p podgrant-core -p podgrant-harness -p podgrant-sim";
            doCheck = false; # the tests run once, in checks.test
            meta.mainProgram = "podgrant";
          }
        );

        # A check that runs one of scripts/check-*.sh inside the sandbox, on top of the shared
        # dependency artifacts. The scripts keep crane's CARGO_TARGET_DIR (they only default it
        # outside Nix).
        scriptCheck =
          name: script: extra:
          craneLib.mkCargoDerivation (
            commonArgs
            // {
              inherit cargoArtifacts;
              pname = "podgrant-${name}";
              doInstallCargoArtifacts = false;
              nativeBuildInputs = commonArgs.nativeBuildInputs ++ testTools ++ (extra.nativeBuildInputs or [ ]);
              KUBECTL = "${pkgs.kubectl}/bin/kubectl";
              PODGRANT_TEST_MYSQL = "spawn";
              # No skip to green: a test that can't find one of these fails (harness/src/require.rs).
              # Not node: @kubernetes/client-node comes from npm, which the sandbox can't reach
              # without a fixed-output derivation; sim/tests/node_client.rs skips loudly there
              # and .ci/run requires it.
              PODGRANT_REQUIRE = "mysql,kubectl,go,python";
              # The probe's Python subject (harness/tests/probe.rs) and the sim's Python suite need
              # the `kubernetes` client; sim/tests/kopf_operator.rs needs kopf.
              PODGRANT_PYTHON = "${pkgs.python3.withPackages (ps: [ ps.kubernetes ps.kopf ])}/bin/python3";
              preBuild = ''
                export HOME="$TMPDIR/home"
                mkdir -p "$HOME"
              '';
              buildPhaseCargoCommand = "bash scripts/${script}";
              installPhaseCommand = "mkdir -p $out && echo ok > $out/${name}";
            }
            // (builtins.removeAttrs extra [ "nativeBuildInputs" ])
          );
      in
      {
        packages = {
          default = podgrant;
          inherit podgrant;
          # exposed so `nix build .#deps` can warm a binary cache
          deps = cargoArtifacts;
        };

        apps = {
          default = flake-utils.lib.mkApp { drv = podgrant; };
          # The README's main command: the seed's busy loop vs the engine under the same fault.
          reproduce-busy-loop = flake-utils.lib.mkApp {
            drv = pkgs.writeShellScriptBin "podgrant-reproduce-busy-loop" ''
              exec ${podgrant}/bin/podgrant-harness reproduce busy-loop "$@"
            '';
          };
          # The simulated API server; point kubectl at the kubeconfig it writes.
          sim = flake-utils.lib.mkApp {
            drv = podgrant;
            exePath = "/bin/podgrant-sim";
          };
        };

        checks = {
          build = podgrant;
          clippy = scriptCheck "clippy" "check-clippy.sh" {
            nativeBuildInputs = [ pkgs.clippy ];
          };
          fmt = scriptCheck "fmt" "check-fmt.sh" {
            nativeBuildInputs = [ pkgs.rustfmt ];
            cargoArtifacts = null; # formatting needs no compiled dependencies
          };
          test = scriptCheck "test" "check-test.sh" {
            nativeBuildInputs = [ pkgs.cargo-nextest ]; # per-test time bound (.config/nextest.toml)
          };
          scenarios = scriptCheck "scenarios" "check-scenarios.sh" { };
          bench-smoke = scriptCheck "bench-smoke" "check-bench-smoke.sh" {
            nativeBuildInputs = [ pkgs.valgrind ];
          };
        };

        devShells.default = craneLib.devShell {
          # the checks' inputs (mariadb, kubectl, clippy, rustfmt…) come along
          checks = self.checks.${system};
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.mariadb
            pkgs.kubectl
            pkgs.valgrind
            pkgs.go # `go tool pprof` for profile.pb(.gz) files
          ];
        };

        formatter = pkgs.nixfmt-rfc-style;
      }
    );
}

# Stub crane for scripts/check-nix.sh. Each function returns a trivial derivation, after
# asserting the wiring the real flake relies on (see nix/stubs/README.md).
{
  description = "stub crane (offline evaluation of podgrant's flake)";
  outputs =
    { self }:
    {
      mkLib =
        pkgs:
        let
          system = pkgs.cargo.system;
          fail = msg: builtins.throw "stub crane: ${msg}";
          isDrv = x: builtins.isAttrs x && (x.type or "") == "derivation";

          # "bash scripts/foo.sh" must name a script that the source filter kept.
          checkScript =
            src: cmd:
            let
              m = builtins.match ".*bash (scripts/[A-Za-z0-9_.-]+\\.sh).*" cmd;
            in
            if m == null then
              true
            else if builtins.pathExists "${src}/${builtins.head m}" then
              true
            else
              fail "${builtins.head m} is not in the filtered source (${src})";

          checkArtifacts =
            who: args:
            if !(args ? cargoArtifacts) then
              fail "${who}: no cargoArtifacts given (pass the buildDepsOnly derivation, or null explicitly)"
            else if args.cargoArtifacts != null && !(isDrv args.cargoArtifacts) then
              fail "${who}: cargoArtifacts is not a derivation"
            else
              true;

          mk =
            kind: args:
            assert args ? src || fail "${kind}: no src";
            assert builtins.pathExists "${args.src}/Cargo.toml" || fail "${kind}: src has no Cargo.toml";
            assert builtins.pathExists "${args.src}/Cargo.lock" || fail "${kind}: src has no Cargo.lock";
            let
              name = "${args.pname or "crate"}-${kind}";
              artifacts =
                if (args.cargoArtifacts or null) == null then "none" else "${args.cargoArtifacts}";
            in
            (builtins.derivation {
              inherit name system;
              builder = "/bin/sh";
              args = [ "-c" "echo stub > $out" ];
              src = args.src;
              stubKind = kind;
              stubCargoArtifacts = artifacts;
              stubCommand = args.buildPhaseCargoCommand or "";
              stubCargoExtraArgs = args.cargoExtraArgs or "";
              nativeBuildInputs = args.nativeBuildInputs or [ ];
            })
            // {
              pname = args.pname or "crate";
              meta = args.meta or { };
              passthru = {
                inherit kind artifacts;
                command = args.buildPhaseCargoCommand or "";
              };
            };

          # crane's filterCargoSources: Rust sources, Cargo manifests and lock, .cargo config
          filterCargoSources =
            path: type:
            let
              base = baseNameOf (toString path);
              has = s: builtins.match ".*${s}" base != null;
            in
            type == "directory" && base != "target" && base != ".git"
            || has "\\.rs"
            || has "\\.toml"
            || base == "Cargo.lock";
        in
        {
          inherit filterCargoSources;
          buildDepsOnly = args: mk "deps" (args // { cargoArtifacts = null; });
          buildPackage =
            args:
            assert checkArtifacts "buildPackage" args;
            mk "package" args;
          mkCargoDerivation =
            args:
            assert checkArtifacts "mkCargoDerivation" args;
            assert args ? buildPhaseCargoCommand || fail "mkCargoDerivation: no buildPhaseCargoCommand";
            assert checkScript args.src args.buildPhaseCargoCommand;
            mk "cargo" args;
          devShell =
            args:
            pkgs.mkShell {
              name = "podgrant-devshell";
              packages = (args.packages or [ ]) ++ [
                pkgs.cargo
                pkgs.rustc
              ];
              nativeBuildInputs = builtins.concatLists (
                map (c: c.nativeBuildInputs or [ ]) (builtins.attrValues (args.checks or { }))
              );
            };
        };
    };
}

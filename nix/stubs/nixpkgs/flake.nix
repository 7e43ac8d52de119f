# Stub nixpkgs for scripts/check-nix.sh: no real packages, only trivially-buildable
# derivations with the names the root flake uses, and a tiny lib.
{
  description = "stub nixpkgs (offline evaluation of podgrant's flake)";
  outputs =
    { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forSystem =
        system:
        let
          drv =
            name: extra:
            builtins.derivation (
              {
                inherit name system;
                builder = "/bin/sh";
                args = [ "-c" "echo stub > $out" ];
              }
              // extra
            );
          pkg =
            name:
            (drv "${name}-stub" { }) // { pname = name; meta.mainProgram = name; };
          lib = {
            hasSuffix =
              suffix: s:
              let
                ls = builtins.stringLength s;
                lx = builtins.stringLength suffix;
              in
              ls >= lx && builtins.substring (ls - lx) lx s == suffix;
            optionals = cond: xs: if cond then xs else [ ];
            # real: copies src into the store through the filter
            cleanSourceWith =
              {
                src,
                filter ? (_: _: true),
                name ? "source",
              }:
              builtins.path {
                path = src;
                inherit name filter;
              };
          };
        in
        {
          inherit lib;
          stdenv = { isDarwin = false; isLinux = true; };
          writeShellScriptBin =
            name: text:
            drv name {
              inherit text;
              passAsFile = [ "text" ];
            };
          mkShell =
            args:
            drv (args.name or "shell") {
              nativeBuildInputs = (args.packages or [ ]) ++ (args.nativeBuildInputs or [ ]);
            };
        }
        // builtins.listToAttrs (
          map (n: {
            name = n;
            value = pkg n;
          }) [
            "bash"
            "cargo"
            "cargo-nextest"
            "clippy"
            "go"
            "kubectl"
            "mariadb"
            "nixfmt-rfc-style"
            "pkg-config"
            "rust-analyzer"
            "rustc"
            "rustfmt"
            "valgrind"
          ]
        );
    in
    {
      legacyPackages = builtins.listToAttrs (
        map (s: {
          name = s;
          value = forSystem s;
        }) systems
      );
      lib = (forSystem "x86_64-linux").lib;
    };
}

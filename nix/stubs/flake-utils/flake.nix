# Stub flake-utils for scripts/check-nix.sh: eachSystem and mkApp with flake-utils' semantics.
{
  description = "stub flake-utils (offline evaluation of podgrant's flake)";
  outputs =
    { self }:
    {
      lib = rec {
        # { packages.<system> = …; checks.<system> = …; } from f system = { packages = …; … }
        eachSystem =
          systems: f:
          builtins.foldl' (
            acc: system:
            let
              out = f system;
            in
            builtins.foldl' (
              acc2: attr:
              acc2
              // {
                ${attr} = (acc2.${attr} or { }) // {
                  ${system} = out.${attr};
                };
              }
            ) acc (builtins.attrNames out)
          ) { } systems;
        eachDefaultSystem = eachSystem [
          "x86_64-linux"
          "aarch64-linux"
        ];
        mkApp =
          {
            drv,
            name ? drv.pname or drv.name,
            exePath ? drv.passthru.exePath or "/bin/${name}",
          }:
          {
            type = "app";
            program = "${drv}${exePath}";
          };
      };
    };
}

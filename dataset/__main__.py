"""`python -m dataset`: every registered dataset family, its names and its agents' default flags
(the launcher's settings before distributed_test.sh's own and AGENT_ARGS)."""
import dataset


def main():
    for name, spec in sorted(dataset.families().items()):
        names = ", ".join([*spec.names, *([spec.name_pattern] if spec.name_pattern else [])])
        print(f"{name} ({spec.kind}): {names}")
        for agent in dataset.AGENTS:
            print(f"  {agent:<19} {' '.join(dataset.agent_defaults(name, agent))}")
    for module, why in dataset._UNLOADED.items():
        print(f"not loaded: dataset/{module}.py ({why})")


if __name__ == "__main__":
    main()

"""Design 2: an AutoIterationLogger; every agent run is an iteration of its own."""

from agentlog import AutoIterationLogger


class MyAgent:
    def __init__(self, name: str, logger: AutoIterationLogger) -> None:
        self.name = name
        self.logger = logger

    def run(self, input_data: str) -> str:
        output = f"Processed: {input_data}"
        self.logger.log_agent_run(agent_name=self.name, input_data=input_data, output_data=output)
        return output


def main() -> None:
    logger = AutoIterationLogger("my_auto_workflow")
    agent = MyAgent(name="test_agent", logger=logger)

    print(agent.run("Hello 1"))
    print(agent.run("Hello 2"))
    # The logger finalises at exit, or explicitly:
    logger.finalize("success")


if __name__ == "__main__":
    main()

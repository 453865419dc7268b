"""Design 3: full manual control of iterations, interactions and actions."""

from agentlog import AdvancedWorkflowLogger


def main() -> None:
    logger = AdvancedWorkflowLogger("my_advanced_workflow")

    try:
        logger.start_iteration(iteration_number=1)
        logger.start_interaction("AgentAlpha", {"message": "Hello from user"})

        logger.log_action(
            action_name="thinking",
            input_obj={"thought": "User says hello"},
            output_obj={"response": "We are about to greet"},
        )

        logger.end_interaction({"message": "Greetings, user!"})
        logger.end_iteration("completed")

    except Exception as e:
        logger.log_error(str(e))
        logger.end_iteration("failed")

    logger.finalize("completed")
    print("done")


if __name__ == "__main__":
    main()

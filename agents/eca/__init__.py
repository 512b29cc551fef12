"""The experiment control agent (`ecs-eca`): store, registry, partitions, control, supervision, web and shell."""

#pragma once
// Each subcommand receives the arguments after its name and returns the process exit code.
// Errors are thrown as loopq::Error and turned into one line on stderr by main().

namespace loopq::cli {

int cmd_tokenize(int argc, char** argv);
int cmd_train_tokenizer(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_forward(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_init(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_calib_stats(int argc, char** argv);
int cmd_diagnose(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int bench_model(int argc, char** argv);  // loopq bench model (src/cli/bench/model_bench.cpp)

}  // namespace loopq::cli

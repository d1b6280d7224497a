package eddy.bench;

import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

import sun.misc.Signal;

/**
 * Kafka Streams word count, a peer for the Eddy benchmark.
 *
 * <pre>
 * java -jar wordcount.jar --bootstrap HOST:PORT --input TOPIC --output TOPIC \
 *     --app-id ID --state-dir DIR [--threads N] [--commit-interval-ms MS] [--cache-max-bytes N]
 * </pre>
 *
 * Input values are UTF-8 lines of words (keys are ignored). Output records
 * are key = word (UTF-8), value = its running count as a decimal string.
 * Prints exactly "READY" on stdout the first time the application reaches
 * RUNNING, and nothing else; logs go to stderr (WARN and above). On SIGTERM
 * or SIGINT it closes the application (up to 30 s) and exits 0; it exits 1 if
 * the application fails (state ERROR) and 2 on bad arguments.
 */
public final class WordCount {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);
    private static final String STORE = "counts";

    private WordCount() {
    }

    public static void main(String[] args) throws InterruptedException {
        // Keep the real stdout for the READY line only; anything else that
        // writes to System.out (should not happen) goes to stderr instead.
        PrintStream stdout = System.out;
        System.setOut(System.err);

        Args a;
        try {
            a = Args.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("wordcount: " + e.getMessage());
            System.err.println(Args.USAGE);
            System.exit(2);
            return;
        }

        KafkaStreams streams = new KafkaStreams(topology(a.input, a.output), config(a));

        CountDownLatch done = new CountDownLatch(1);
        AtomicInteger exitCode = new AtomicInteger(0);
        AtomicBoolean ready = new AtomicBoolean(false);
        streams.setStateListener((newState, oldState) -> {
            if (newState == KafkaStreams.State.RUNNING && ready.compareAndSet(false, true)) {
                stdout.println("READY");
                stdout.flush();
            } else if (newState == KafkaStreams.State.ERROR) {
                System.err.println("wordcount: Kafka Streams entered state ERROR");
                exitCode.compareAndSet(0, 1);
                done.countDown();
            }
        });

        // SIGTERM/SIGINT: the main thread closes the application and exits 0.
        // (A plain shutdown hook alone would run on SIGTERM too, but the JVM
        // then exits with status 143, not 0.) The hook below still closes the
        // application on any other JVM exit.
        Signal.handle(new Signal("TERM"), sig -> done.countDown());
        Signal.handle(new Signal("INT"), sig -> done.countDown());
        Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(CLOSE_TIMEOUT), "wordcount-shutdown"));

        streams.start();
        done.await();
        boolean closed = streams.close(CLOSE_TIMEOUT);
        if (!closed) {
            System.err.println("wordcount: Kafka Streams did not close within " + CLOSE_TIMEOUT);
        }
        System.exit(exitCode.get());
    }

    /** source(input) -> words -> group by word -> count("counts") -> to(output). */
    static Topology topology(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.String()))
                .flatMapValues(WordCount::words)
                .groupBy((key, word) -> word, Grouped.with(Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(STORE)
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()))
                .toStream()
                .mapValues(count -> Long.toString(count))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    static Properties config(Args a) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, a.stateDir);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.threads);
        // Single-broker cluster: internal (repartition/changelog) topics get one replica.
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        if (a.cacheMaxBytes >= 0) {
            // Only with --cache-max-bytes: 0 turns the record cache off, so every
            // update goes to the changelog and the output, like Eddy and faust.
            p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, a.cacheMaxBytes);
        }
        if (a.commitIntervalMs >= 0) {
            // Only with --commit-interval-ms: the default (30 s) is kept otherwise.
            p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, a.commitIntervalMs);
        }
        return p;
    }

    /** Splits a line on whitespace, skipping empty tokens. */
    static List<String> words(String line) {
        if (line == null || line.isEmpty()) {
            return Collections.emptyList();
        }
        List<String> out = new ArrayList<>();
        int n = line.length();
        int i = 0;
        while (i < n) {
            while (i < n && Character.isWhitespace(line.charAt(i))) {
                i++;
            }
            int start = i;
            while (i < n && !Character.isWhitespace(line.charAt(i))) {
                i++;
            }
            if (i > start) {
                out.add(line.substring(start, i));
            }
        }
        return out;
    }

    /** Command-line arguments. */
    static final class Args {
        static final String USAGE = "usage: java -jar wordcount.jar --bootstrap HOST:PORT --input TOPIC"
                + " --output TOPIC --app-id ID --state-dir DIR [--threads N] [--commit-interval-ms MS] [--cache-max-bytes N]";

        String bootstrap;
        String input;
        String output;
        String appId;
        String stateDir;
        int threads = 1;
        long commitIntervalMs = -1;
        long cacheMaxBytes = -1;

        static Args parse(String[] args) {
            Args a = new Args();
            for (int i = 0; i < args.length; i++) {
                String flag = args[i];
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("missing value for " + flag);
                }
                String v = args[++i];
                switch (flag) {
                    case "--bootstrap" -> a.bootstrap = v;
                    case "--input" -> a.input = v;
                    case "--output" -> a.output = v;
                    case "--app-id" -> a.appId = v;
                    case "--state-dir" -> a.stateDir = v;
                    case "--threads" -> {
                        try {
                            a.threads = Integer.parseInt(v);
                        } catch (NumberFormatException e) {
                            throw new IllegalArgumentException("--threads: not a number: " + v);
                        }
                        if (a.threads < 1) {
                            throw new IllegalArgumentException("--threads must be >= 1");
                        }
                    }
                    case "--commit-interval-ms" -> {
                        try {
                            a.commitIntervalMs = Long.parseLong(v);
                        } catch (NumberFormatException e) {
                            throw new IllegalArgumentException("--commit-interval-ms: not a number: " + v);
                        }
                        if (a.commitIntervalMs < 0) {
                            throw new IllegalArgumentException("--commit-interval-ms must be >= 0");
                        }
                    }
                    case "--cache-max-bytes" -> {
                        try {
                            a.cacheMaxBytes = Long.parseLong(v);
                        } catch (NumberFormatException e) {
                            throw new IllegalArgumentException("--cache-max-bytes: not a number: " + v);
                        }
                        if (a.cacheMaxBytes < 0) {
                            throw new IllegalArgumentException("--cache-max-bytes must be >= 0");
                        }
                    }
                    default -> throw new IllegalArgumentException("unknown argument " + flag);
                }
            }
            require(a.bootstrap, "--bootstrap");
            require(a.input, "--input");
            require(a.output, "--output");
            require(a.appId, "--app-id");
            require(a.stateDir, "--state-dir");
            return a;
        }

        private static void require(String v, String flag) {
            if (v == null || v.isEmpty()) {
                throw new IllegalArgumentException("missing " + flag);
            }
        }
    }
}

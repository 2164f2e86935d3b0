package org.setls.applet;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/** Reads vectors/*.txt: blocks separated by blank lines, "name = hex" per line. */
final class Vectors {
    private Vectors() {
    }

    static List<Map<String, byte[]>> load(String file) throws IOException {
        Path dir = Paths.get(System.getProperty("setls.vectors", "vectors"));
        List<Map<String, byte[]>> cases = new ArrayList<>();
        Map<String, byte[]> current = new HashMap<>();
        for (String line : Files.readAllLines(dir.resolve(file))) {
            line = line.strip();
            if (line.startsWith("#")) {
                continue;
            }
            if (line.isEmpty()) {
                if (!current.isEmpty()) {
                    cases.add(current);
                    current = new HashMap<>();
                }
                continue;
            }
            String[] parts = line.split("=", 2);
            current.put(parts[0].strip(), HexFormat.of().parseHex(parts[1].strip()));
        }
        if (!current.isEmpty()) {
            cases.add(current);
        }
        return cases;
    }
}

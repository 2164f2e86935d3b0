package org.setls.applet;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads the vectors/*.json files that the Java and the Python tests share: an object with a
 * "source" and a "cases" array of objects whose values are strings (hex unless said otherwise).
 * A small JSON reader of its own, since the test class path has no JSON library.
 */
final class JsonVectors {
    private JsonVectors() {
    }

    /** One case: its fields, hex decoded on demand. */
    record Case(Map<String, Object> fields) {
        byte[] hex(String name) {
            Object v = fields.get(name);
            if (!(v instanceof String s)) {
                throw new IllegalArgumentException("no hex field " + name + " in " + fields.get("name"));
            }
            return HexFormat.of().parseHex(s);
        }

        String name() {
            return String.valueOf(fields.get("name"));
        }

        @Override
        public String toString() {
            return name();
        }
    }

    static Path dir() {
        return Paths.get(System.getProperty("setls.vectors", "vectors"));
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> file(String name) throws IOException {
        Object doc = new Parser(Files.readString(dir().resolve(name))).document();
        return (Map<String, Object>) doc;
    }

    @SuppressWarnings("unchecked")
    static List<Case> cases(String name) throws IOException {
        List<Case> out = new ArrayList<>();
        for (Object o : (List<Object>) file(name).get("cases")) {
            out.add(new Case((Map<String, Object>) o));
        }
        return out;
    }

    /** JSON (RFC 8259) values: objects, arrays, strings, numbers (as Double), true, false, null. */
    private static final class Parser {
        private final String s;
        private int p;

        Parser(String s) {
            this.s = s;
        }

        Object document() {
            Object v = value();
            skip();
            if (p != s.length()) {
                throw error("trailing characters");
            }
            return v;
        }

        private Object value() {
            skip();
            if (p >= s.length()) {
                throw error("unexpected end");
            }
            char c = s.charAt(p);
            switch (c) {
                case '{':
                    return object();
                case '[':
                    return array();
                case '"':
                    return string();
                case 't':
                    return literal("true", Boolean.TRUE);
                case 'f':
                    return literal("false", Boolean.FALSE);
                case 'n':
                    return literal("null", null);
                default:
                    return number();
            }
        }

        private Map<String, Object> object() {
            Map<String, Object> m = new LinkedHashMap<>();
            p++;
            skip();
            if (peek('}')) {
                return m;
            }
            do {
                skip();
                String key = string();
                skip();
                expect(':');
                m.put(key, value());
                skip();
            } while (peek(','));
            expect('}');
            return m;
        }

        private List<Object> array() {
            List<Object> l = new ArrayList<>();
            p++;
            skip();
            if (peek(']')) {
                return l;
            }
            do {
                l.add(value());
                skip();
            } while (peek(','));
            expect(']');
            return l;
        }

        private String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = s.charAt(p++);
                if (c == '"') {
                    return b.toString();
                }
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                char e = s.charAt(p++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> {
                        b.append((char) Integer.parseInt(s.substring(p, p + 4), 16));
                        p += 4;
                    }
                    default -> b.append(e); // \" \\ \/
                }
            }
        }

        private Object number() {
            int start = p;
            while (p < s.length() && "+-0123456789.eE".indexOf(s.charAt(p)) >= 0) {
                p++;
            }
            if (start == p) {
                throw error("unexpected character");
            }
            return Double.valueOf(s.substring(start, p));
        }

        private Object literal(String word, Object v) {
            if (!s.startsWith(word, p)) {
                throw error("bad literal");
            }
            p += word.length();
            return v;
        }

        private void skip() {
            while (p < s.length() && Character.isWhitespace(s.charAt(p))) {
                p++;
            }
        }

        private boolean peek(char c) {
            if (p < s.length() && s.charAt(p) == c) {
                p++;
                return true;
            }
            return false;
        }

        private void expect(char c) {
            if (!peek(c)) {
                throw error("expected '" + c + "'");
            }
        }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException("JSON: " + what + " at offset " + p);
        }
    }
}
